"""The appeal upload store: what it accepts, what it refuses and why, and how it keeps files on disk."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from thawline.adapters.blobs import BlobStore, StoredBlob, UploadRefused, sniff
from thawline.domain.errors import InvalidInputError, NotFoundError

MIB = 1024 * 1024


def make_pdf() -> bytes:
    return (
        b"%PDF-1.4\n"
        b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj\n"
        b"xref\n0 4\n0000000000 65535 f \n"
        b"trailer << /Size 4 /Root 1 0 R >>\nstartxref\n0\n%%EOF\n"
    )


def png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def make_png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then one red pixel
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")
    )


def make_jpeg() -> bytes:
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + b"\xff\xd9"


def make_webp() -> bytes:
    chunk = b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00" + b"\x00"  # padded to even
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


LETTER = "我是账户持有人。冻结前的三笔交易都是我本人在网店的正常购物，订单截图已附上。\r\n\t谢谢。\n".encode()

ACCEPTED = [
    pytest.param(make_pdf(), "application/pdf", id="pdf"),
    pytest.param(make_png(), "image/png", id="png"),
    pytest.param(make_jpeg(), "image/jpeg", id="jpeg"),
    pytest.param(make_webp(), "image/webp", id="webp"),
    pytest.param(LETTER, "text/plain; charset=utf-8", id="utf8-text"),
]


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# --- accepted types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "media_type"), ACCEPTED)
def test_each_accepted_type_is_stored_and_read_back_unchanged(
    store: BlobStore, data: bytes, media_type: str
) -> None:
    blob = store.put(data)
    assert blob == StoredBlob(sha256=hashlib.sha256(data).hexdigest(), media_type=media_type, size=len(data))
    assert store.exists(blob.sha256)
    assert store.get(blob.sha256) == data


@pytest.mark.parametrize(("data", "media_type"), ACCEPTED)
def test_sniff_names_the_type_from_the_bytes(data: bytes, media_type: str) -> None:
    assert sniff(data) == media_type


def test_a_jpeg_padded_with_zeros_after_its_end_marker_is_still_a_jpeg() -> None:
    assert sniff(make_jpeg() + b"\x00" * 64) == "image/jpeg"


def test_a_letter_that_begins_with_the_word_riff_is_plain_text() -> None:
    assert sniff(b"RIFF between me and the bank: I never made these payments.") == "text/plain; charset=utf-8"


def test_a_letter_may_mention_a_less_than_sign() -> None:
    assert sniff("金额 < 500 元, so the limit was not reached.".encode()) == "text/plain; charset=utf-8"


# --- deduplication and layout -----------------------------------------------------------------------


def test_storing_the_same_content_twice_gives_the_same_digest_and_one_file(store: BlobStore) -> None:
    first = store.put(make_png())
    second = store.put(make_png())
    assert first == second
    assert stored_files(store.root) == [store.root / first.sha256[:2] / first.sha256[2:4] / first.sha256]


def test_the_file_lives_under_two_levels_named_by_the_first_two_byte_pairs(store: BlobStore) -> None:
    blob = store.put(make_pdf())
    digest = blob.sha256
    expected = store.root / digest[0:2] / digest[2:4] / digest
    assert store.path_for(digest) == expected
    assert expected.read_bytes() == make_pdf()
    assert [p.relative_to(store.root).parts for p in stored_files(store.root)] == [
        (digest[0:2], digest[2:4], digest)
    ]


def test_no_temporary_files_are_left_behind(store: BlobStore) -> None:
    for data in (make_pdf(), make_png(), make_jpeg(), make_webp(), LETTER):
        store.put(data)
    assert not [p for p in stored_files(store.root) if p.name.startswith(".")]
    assert len(stored_files(store.root)) == 5


# --- refused content --------------------------------------------------------------------------------

PAYLOADS = [
    pytest.param(
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40 + b"PK\x05\x06" + b"\x00" * 18, id="zip"
    ),
    pytest.param(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48, id="exe"),
    pytest.param(b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56, id="elf"),
    pytest.param(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", id="gif"),
    pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", id="riff-wav"),
]

MARKUP = [
    pytest.param(b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", id="html"),
    pytest.param(b"  \n<html><p>statement</p></html>", id="html-after-whitespace"),
    pytest.param(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="x()"/>', id="svg"),
    pytest.param("说明如下。\n<SCRIPT>fetch('/steal')</SCRIPT>".encode(), id="script-inside-a-letter"),
]


@pytest.mark.parametrize("data", PAYLOADS)
def test_an_executable_or_archive_is_refused_whatever_it_was_called(store: BlobStore, data: bytes) -> None:
    assert sniff(data) is None
    with pytest.raises(UploadRefused) as caught:
        store.put(data)
    assert caught.value.field == "file"
    assert str(caught.value) == (
        "the content is not an accepted type (PDF, PNG, JPEG, WebP, plain UTF-8 text); "
        "a file named .pdf does not make it one"
    )
    assert stored_files(store.root) == []


@pytest.mark.parametrize("data", MARKUP)
def test_html_or_svg_is_refused_even_though_it_is_valid_utf8(store: BlobStore, data: bytes) -> None:
    assert sniff(data) is None
    with pytest.raises(UploadRefused, match="looks like HTML or XML markup") as caught:
        store.put(data)
    assert caught.value.field == "file"


def test_a_png_with_a_pdf_name_is_still_a_png_and_pdf_like_junk_is_not_a_pdf() -> None:
    # Only bytes count: the PNG stays a PNG, and a PNG signature in front of junk is nothing.
    assert sniff(make_png()) == "image/png"
    assert sniff(b"\x89PNG\r\n\x1a\n" + b"%PDF-1.4 %%EOF") is None


def test_a_truncated_pdf_is_refused_as_unreadable(store: BlobStore) -> None:
    cut = make_pdf()[:-30]
    assert sniff(cut) is None  # and in particular not mistaken for plain text
    with pytest.raises(UploadRefused) as caught:
        store.put(cut)
    assert caught.value.field == "file"
    assert str(caught.value) == "the PDF is truncated or unreadable"


def test_a_pdf_whose_end_marker_is_far_from_the_end_is_refused(store: BlobStore) -> None:
    with pytest.raises(UploadRefused, match="truncated or unreadable"):
        store.put(make_pdf() + b"\n" + b"0" * 2048)


def test_a_jpeg_without_its_end_marker_is_refused(store: BlobStore) -> None:
    with pytest.raises(UploadRefused, match="JPEG is truncated"):
        store.put(make_jpeg()[:-2])


def test_a_png_with_a_corrupt_header_chunk_is_refused(store: BlobStore) -> None:
    damaged = bytearray(make_png())
    damaged[20] ^= 0xFF  # inside the IHDR body, so its CRC no longer matches
    with pytest.raises(UploadRefused, match="PNG is damaged"):
        store.put(bytes(damaged))


@pytest.mark.parametrize(
    "data",
    [b"line one\x00line two", b"bell\x07", b"\x1b[31mred\x1b[0m", "c1 \u0085 control".encode()],
    ids=["nul", "bell", "escape", "c1"],
)
def test_text_with_control_characters_is_not_a_letter(data: bytes) -> None:
    assert sniff(data) is None


def test_the_refusal_message_never_repeats_the_uploaded_content(store: BlobStore) -> None:
    secret = "110105199003070012 张三"
    for data in (f"<html>{secret}</html>".encode(), f"{secret}\x00".encode()):
        with pytest.raises(UploadRefused) as caught:
            store.put(data)
        assert "110105" not in str(caught.value)
        assert "张三" not in str(caught.value)


# --- size limits ------------------------------------------------------------------------------------


def test_an_empty_file_is_refused(store: BlobStore) -> None:
    with pytest.raises(UploadRefused) as caught:
        store.put(b"")
    assert caught.value.field == "file"
    assert str(caught.value) == "the file is empty"


def test_a_file_over_the_default_limit_is_refused_with_both_sizes_named(store: BlobStore) -> None:
    big = make_pdf() + b" " * int(12.4 * MIB - len(make_pdf()) - 6) + b"%%EOF\n"
    with pytest.raises(UploadRefused) as caught:
        store.put(big)
    assert caught.value.field == "file"
    assert str(caught.value) == "the file is 12.4 MB; the limit is 10 MB"
    assert stored_files(store.root) == []


def test_one_byte_over_the_limit_never_reads_as_equal_to_it(store: BlobStore) -> None:
    with pytest.raises(UploadRefused) as caught:
        store.put(b"a" * (10 * MIB + 1))
    assert str(caught.value) == "the file is 10.1 MB; the limit is 10 MB"


def test_a_small_configured_limit_is_named_in_bytes(tmp_path: Path) -> None:
    with pytest.raises(UploadRefused) as caught:
        BlobStore(tmp_path, max_bytes=100).put(b"a" * 101)
    assert caught.value.field == "file"
    assert str(caught.value) == "the file is 101 bytes; the limit is 100 bytes"


def test_a_file_exactly_at_the_limit_is_accepted(tmp_path: Path) -> None:
    assert BlobStore(tmp_path, max_bytes=100).put(b"a" * 100).size == 100


def test_upload_refused_is_an_invalid_input_error(store: BlobStore) -> None:
    with pytest.raises(InvalidInputError):
        store.put(b"")


# --- permissions ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("permissive_umask")
def test_files_are_0600_and_directories_0700_even_under_a_permissive_umask(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "new" / "blobs")
    blob = store.put(make_jpeg())
    path = store.path_for(blob.sha256)
    assert path.stat().st_mode & 0o777 == 0o600
    for directory in (path.parent, path.parent.parent, store.root):
        assert directory.stat().st_mode & 0o777 == 0o700


# --- reading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    [
        "../etc/passwd",
        "../../" + "a" * 58,
        "A" * 64,
        hashlib.sha256(b"x").hexdigest().upper(),
        "a" * 63,
        "a" * 65,
        "a" * 64 + "\n",
        "g" * 64,
        "",
    ],
    ids=["dotdot", "dotdot-padded", "upper", "upper-real", "short", "long", "newline", "not-hex", "empty"],
)
def test_a_malformed_digest_is_refused_before_touching_the_disk(store: BlobStore, digest: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        store.get(digest)
    assert caught.value.field == "sha256"
    with pytest.raises(InvalidInputError):
        store.exists(digest)


def test_an_absent_digest_is_not_found(store: BlobStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(missing)
    with pytest.raises(NotFoundError):
        store.get(missing)


def test_a_file_altered_on_disk_is_detected_on_read(store: BlobStore) -> None:
    blob = store.put(make_pdf())
    store.path_for(blob.sha256).write_bytes(make_pdf().replace(b"612", b"999"))
    with pytest.raises(ValueError, match="altered on disk"):
        store.get(blob.sha256)


def test_uploading_the_true_bytes_again_repairs_an_altered_file(store: BlobStore) -> None:
    blob = store.put(LETTER)
    store.path_for(blob.sha256).write_bytes(b"tampered")
    assert store.put(LETTER) == blob
    assert store.get(blob.sha256) == LETTER
    assert store.path_for(blob.sha256).stat().st_mode & 0o777 == 0o600
