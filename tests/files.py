"""Small but real files for upload tests."""

from __future__ import annotations

import struct
import zlib

from thawline.services.demo_cases import pdf as demo_pdf


def pdf(text: str = "order 20261125-0001, CNY 88.50") -> bytes:
    """A minimal one-page PDF (the demo's own builder)."""
    return demo_pdf(text)


def png(width: int = 2, height: int = 2) -> bytes:
    """A tiny RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
