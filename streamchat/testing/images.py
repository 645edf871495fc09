"""Tiny real image files for tests and the bundled recordings, built without an image
library: a PNG encoder for RGB rows, and a one-colour PNG."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence


def encode_png(width: int, height: int, rows: Sequence[bytes]) -> bytes:
    """A PNG of ``height`` rows of ``width`` RGB pixels (3 bytes each)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 before each row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG of one colour (the bytes differ with the colour: each its own hash)."""
    return encode_png(width, height, [bytes(rgb) * width] * height)
