"""Tiny real files for the attachment tests (the PNGs come from streamchat.testing.images)."""

from __future__ import annotations

from streamchat.testing.images import png

__all__ = ["PDF", "png"]

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
"""Enough of a PDF for its signature to be sniffed."""
