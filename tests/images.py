"""Tiny real files for the attachment tests (the PNGs come from streamchat.testing.images)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from streamchat.attachments import Attachment, Limits, inspect
from streamchat.testing.images import png

__all__ = ["PDF", "attach", "png", "sha"]

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
"""Enough of a PDF for its signature to be sniffed."""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def attach(folder: Path, name: str, data: bytes) -> Attachment:
    """A file as the page hands it over: on disk, checked."""
    path = folder / name
    path.write_bytes(data)
    return inspect(path, Limits())
