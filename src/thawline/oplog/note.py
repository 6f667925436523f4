"""C2SP signed notes with Ed25519 (c2sp.org/signed-note) and tlog-checkpoint bodies."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519_TYPE = 0x01  # signed-note signature type byte for Ed25519
KEY_ID_SIZE = 4
MAX_SIGNATURES = 100  # the spec asks verifiers for a limit of at least 16; Go's x/mod/sumdb/note uses 100
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_ROOT_SIZE = 32
_MAX_TREE_SIZE = 2**64 - 1
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # every ASCII control character except newline
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A note or checkpoint is malformed or not signed by a trusted key."""


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("key name must be a non-empty string")
    if "+" in name or any(ch.isspace() for ch in name) or _CONTROL.search(name):
        raise ValueError(f"key name {name!r} must not contain spaces, '+' or control characters")


def _b64decode(text: str) -> bytes:
    """Decode canonical standard base64; anything another encoder would not produce is refused."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid base64") from exc
    # b64decode ignores non-zero padding bits; re-encoding catches them so one value has one spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_text(text: str, what: str) -> bytes:
    """Return the UTF-8 bytes of a note text, refusing control characters other than newline."""
    if not isinstance(text, str):
        raise NoteError(f"{what} must be a string")
    if _CONTROL.search(text):
        raise NoteError(f"{what} contains an ASCII control character")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 form
        raise NoteError(f"{what} is not valid UTF-8") from exc


def key_id(name: str, public_key: bytes) -> bytes:
    """Return the 4-byte signed-note key ID of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return sha256(name.encode("utf-8") + b"\n" + bytes([ED25519_TYPE]) + public_key).digest()[:KEY_ID_SIZE]


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def format_vkey(name: str, public_key: Ed25519PublicKey) -> str:
    """Return the verifier key string ``name+hexkeyid+base64(0x01 || public key)``."""
    _check_name(name)
    raw = _raw_public(public_key)
    return f"{name}+{key_id(name, raw).hex()}+{_b64encode(bytes([ED25519_TYPE]) + raw)}"


class Verifier:
    """An Ed25519 public key under a name: checks signature lines that carry its name and key ID."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        _check_name(name)
        self.name = name
        self.public_key = _raw_public(public_key)
        self.key_id = key_id(name, self.public_key)
        self._key = public_key

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Return whether ``sig`` is this key's Ed25519 signature over ``msg``."""
        try:
            self._key.verify(sig, msg)
        except (InvalidSignature, TypeError, ValueError):
            return False
        return True

    @property
    def vkey(self) -> str:
        """Return this verifier's vkey string."""
        return format_vkey(self.name, self._key)

    def __repr__(self) -> str:
        return f"Verifier({self.name!r}, key_id={self.key_id.hex()})"


def parse_vkey(vkey: str) -> Verifier:
    """Parse ``name+hexkeyid+base64key`` into a Verifier; ValueError if malformed or the ID mismatches."""
    if not isinstance(vkey, str):
        raise ValueError("vkey must be a string")
    # Names cannot contain '+', but base64 can: split at most twice.
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise ValueError("vkey must look like name+keyid+key")
    name, hex_id, key64 = parts
    _check_name(name)
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        raise ValueError("vkey key ID must be 8 lowercase hex digits")
    key_data = _b64decode(key64)
    if len(key_data) != 1 + 32 or key_data[0] != ED25519_TYPE:
        raise ValueError("vkey is not an Ed25519 key (type 0x01 followed by 32 bytes)")
    verifier = Verifier(name, Ed25519PublicKey.from_public_bytes(key_data[1:]))
    if verifier.key_id.hex() != hex_id:
        raise ValueError("vkey key ID does not match its name and key")
    return verifier


class Signer:
    """An Ed25519 private key under a name: signs notes."""

    __slots__ = ("_key", "key_id", "name")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        self.key_id = key_id(name, _raw_public(private_key.public_key()))

    @property
    def vkey(self) -> str:
        """Return the vkey string that verifiers of this signer are configured with."""
        return format_vkey(self.name, self._key.public_key())

    def verifier(self) -> Verifier:
        """Return the matching Verifier."""
        return Verifier(self.name, self._key.public_key())

    def sign_note(self, text: str) -> str:
        """Return ``text`` signed: text, blank line, one ``— name base64(keyid || sig)`` line."""
        raw = _check_text(text, "note text")
        if not text.endswith("\n"):
            raise NoteError("note text must end with a newline")
        sig = self._key.sign(raw)
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {_b64encode(self.key_id + sig)}\n"

    def __repr__(self) -> str:
        return f"Signer({self.name!r}, key_id={self.key_id.hex()})"


def _index_verifiers(verifiers: Sequence[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    known: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        slot = (v.name, v.key_id)
        if slot in known and known[slot].public_key != v.public_key:
            # Two keys behind one (name, ID) would make "which key signed" unanswerable.
            raise NoteError(f"two different keys share name {v.name!r} and key ID {v.key_id.hex()}")
        known[slot] = v
    return known


def open_note(note: str, verifiers: Sequence[Verifier]) -> str:
    """Return the text of ``note`` if a known key signed it; NoteError if not, or if malformed."""
    _check_text(note, "note")
    known = _index_verifiers(verifiers)
    split = note.rfind("\n\n")  # the text ends at the last blank line
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("note must end with a signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    raw_text = text.encode("utf-8")
    verified = 0
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        name, _, sig64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            _check_name(name)
            sig = _b64decode(sig64)
        except ValueError as exc:
            raise NoteError(f"malformed signature line {line!r}: {exc}") from exc
        if len(sig) <= KEY_ID_SIZE:
            raise NoteError(f"signature line {line!r} is too short")
        verifier = known.get((name, sig[:KEY_ID_SIZE]))
        if verifier is None:
            continue  # unknown keys are ignored (the spec's MUST), e.g. witnesses we do not track
        if not verifier.verify(raw_text, sig[KEY_ID_SIZE:]):
            raise NoteError(f"invalid signature by known key {name} ({sig[:KEY_ID_SIZE].hex()})")
        verified += 1
    if not verified:
        raise NoteError("note is not signed by any known key")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body: origin, tree size, RFC 6962 root hash and optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Accept any iterable of lines but store a tuple, so checkpoints stay hashable and immutable.
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for what, line in [("origin", self.origin), *(("extension line", e) for e in self.extensions)]:
            if not isinstance(line, str) or not line or "\n" in line or _CONTROL.search(line):
                raise ValueError(f"{what} must be one non-empty line without control characters")
        if (
            isinstance(self.size, bool)
            or not isinstance(self.size, int)
            or not 0 <= self.size <= _MAX_TREE_SIZE
        ):
            raise ValueError(f"tree size must be an integer in [0, 2**64), not {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != _ROOT_SIZE:
            raise ValueError(f"root hash must be {_ROOT_SIZE} bytes")

    def body(self) -> str:
        """Return the checkpoint note text: origin, size and base64 root, then extension lines."""
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Parse a checkpoint note text strictly; NoteError on any deviation from the format."""
        _check_text(body, "checkpoint")
        if not body.endswith("\n"):
            raise NoteError("checkpoint must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint needs origin, size and root lines")
        if any(not line for line in lines):
            raise NoteError("checkpoint lines must not be empty")
        origin, size_text, root64, *extensions = lines
        if len(size_text) > 20 or not _DECIMAL.fullmatch(size_text):
            raise NoteError(f"tree size {size_text!r} is not a decimal without leading zeros")
        size = int(size_text)
        if size > _MAX_TREE_SIZE:
            raise NoteError("tree size does not fit in 64 bits")
        try:
            root_hash = _b64decode(root64)
        except ValueError as exc:
            raise NoteError(f"root hash: {exc}") from exc
        if len(root_hash) != _ROOT_SIZE:
            raise NoteError(f"root hash must be {_ROOT_SIZE} bytes, got {len(root_hash)}")
        return cls(origin, size, root_hash, tuple(extensions))
