"""Appeal uploads on disk: typed by content, stored by SHA-256, written atomically, checked on read."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from thawline.domain.errors import InvalidInputError, NotFoundError

log = logging.getLogger("thawline.blobs")

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
WEBP = "image/webp"
TEXT = "text/plain; charset=utf-8"

_MIB = 1024 * 1024
_ACCEPTED = "PDF, PNG, JPEG, WebP, plain UTF-8 text"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# C0 controls except tab, LF and CR, plus DEL and the C1 block: none belongs in a typed letter,
# and NUL or escape sequences are how binary payloads and terminal tricks hide in "text".
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Text that a browser would sniff as HTML/XML/SVG is refused even though it is valid UTF-8:
# these uploads are shown to reviewers, and markup is the one "text" that can carry script.
_MARKUP = re.compile(
    r"<\s*(?:!doctype|!--|\?xml|html|head|body|script|iframe|frame|object|embed|svg|style|meta|link|form|img)\b",
    re.IGNORECASE,
)


# The name is part of the agreed API, and it still ends in an *Error class through inheritance.
class UploadRefused(InvalidInputError):  # noqa: N818
    """An upload was refused; ``field`` is always ``"file"`` and the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="file")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What the store knows about one stored upload."""

    sha256: str  # lowercase hex
    media_type: str
    size: int


def _pdf_ok(data: bytes) -> bool:
    # A PDF is read from its trailer backwards, so one without %%EOF near the end is cut off.
    return b"%%EOF" in data[-1024:]


def _png_ok(data: bytes) -> bool:
    # IHDR must be the first chunk, 13 bytes long, with a matching CRC: that rules out junk
    # that merely copies the 8-byte signature.
    if len(data) < 8 + 12 + 13:
        return False
    if data[8:16] != b"\x00\x00\x00\x0dIHDR":
        return False
    return zlib.crc32(data[12:29]) == int.from_bytes(data[29:33], "big")


def _jpeg_ok(data: bytes) -> bool:
    # Some cameras and phones pad the file with zeros after the end-of-image marker.
    body = data.rstrip(b"\x00")
    return len(body) >= 5 and body.endswith(b"\xff\xd9")


def _is_webp(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _text_ok(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _CONTROL.search(text) is None and not _looks_like_markup(text)


def _looks_like_markup(text: str) -> bool:
    return text.lstrip("\ufeff \t\r\n").startswith("<") or _MARKUP.search(text) is not None


def sniff(data: bytes) -> str | None:
    """The media type of ``data`` judged from its bytes alone, or None if it is not accepted."""
    if data.startswith(b"%PDF-"):
        # Decided here even when unreadable: a cut-off PDF must not slip through as plain text.
        return PDF if _pdf_ok(data) else None
    if data.startswith(_PNG_SIGNATURE):
        return PNG if _png_ok(data) else None
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG if _jpeg_ok(data) else None
    if _is_webp(data):
        return WEBP
    # No early return for "RIFF" without WEBP: a letter may begin with that word.
    return TEXT if _text_ok(data) else None


def _refusal(data: bytes) -> str:
    """The most specific reason ``sniff`` rejected ``data``."""
    if data.startswith(b"%PDF-"):
        return "the PDF is truncated or unreadable"
    if data.startswith(_PNG_SIGNATURE):
        return "the PNG is damaged: its header chunk is missing or corrupt"
    if data.startswith(b"\xff\xd8\xff"):
        return "the JPEG is truncated: it has no end-of-image marker"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _CONTROL.search(text) is None:
        return "the text looks like HTML or XML markup, which is not accepted; upload plain text or a PDF"
    return f"the content is not an accepted type ({_ACCEPTED}); a file named .pdf does not make it one"


def _mb(n: int, *, up: bool) -> str:
    # The size is rounded up and the limit down, so "10.0 MB over a 10 MB limit" never happens.
    tenths = math.ceil(n * 10 / _MIB) if up else math.floor(n * 10 / _MIB)
    return f"{tenths // 10} MB" if tenths % 10 == 0 else f"{tenths / 10:.1f} MB"


def _size_text(n: int, *, up: bool) -> str:
    return _mb(n, up=up) if n >= _MIB else f"{n} bytes"


def _check_digest(sha256: str) -> None:
    # fullmatch, not match: "$" would let a trailing newline through, and anything else
    # ("../", uppercase, short) must never reach a path join.
    if _DIGEST.fullmatch(sha256) is None:
        raise InvalidInputError("not a SHA-256 digest (64 lowercase hex characters)", field="sha256")


class BlobStore:
    """Content-addressed files under ``root/ab/cd/<sha256>``, private to this process's user."""

    def __init__(self, root: Path, *, max_bytes: int = 10 * _MIB) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.root = root
        self.max_bytes = max_bytes

    def path_for(self, sha256: str) -> Path:
        """Where the blob named ``sha256`` lives (whether or not it exists)."""
        _check_digest(sha256)
        return self.root / sha256[0:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> StoredBlob:
        """Check, type and store an upload; storing the same bytes again changes nothing."""
        size = len(data)
        if size == 0:
            raise UploadRefused("the file is empty")
        if size > self.max_bytes:
            limit = _size_text(self.max_bytes, up=False)
            raise UploadRefused(f"the file is {_size_text(size, up=True)}; the limit is {limit}")
        media_type = sniff(data)
        if media_type is None:
            raise UploadRefused(_refusal(data))
        digest = hashlib.sha256(data).hexdigest()
        blob = StoredBlob(sha256=digest, media_type=media_type, size=size)
        path = self.path_for(digest)
        if self._intact(path, digest):
            return blob
        self._make_dirs(path.parent)
        self._write_atomically(path, data)
        return blob

    def get(self, sha256: str) -> bytes:
        """The stored bytes; NotFoundError if absent, ValueError if they were altered on disk."""
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError("no stored file has that digest") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"stored blob {sha256} no longer matches its digest; it was altered on disk")
        return data

    def exists(self, sha256: str) -> bool:
        """Whether a blob with this digest is stored (its content is not re-checked)."""
        return self.path_for(sha256).is_file()

    def _intact(self, path: Path, digest: str) -> bool:
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            return False
        if hashlib.sha256(current).hexdigest() == digest:
            return True
        # We hold the true bytes, so rewriting repairs the file; the warning keeps the damage visible.
        log.warning("stored blob %s did not match its digest; rewriting it from a fresh upload", digest)
        return False

    def _make_dirs(self, directory: Path) -> None:
        # mkdir(parents=True) gives intermediate directories the default mode, so each level is
        # made here; chmod undoes a permissive umask. Existing directories are left as they are.
        for level in (self.root, directory.parent, directory):
            try:
                level.mkdir(mode=0o700, parents=level == self.root)
            except FileExistsError:
                continue
            os.chmod(level, 0o700)

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        # mkstemp creates the file 0600; same directory so os.replace is a rename, never a copy,
        # and readers see either no file or the whole file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # Without syncing the directory the rename itself may not survive a crash.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
