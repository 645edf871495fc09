"""Defaults that flags document and the runtime uses, in a module light enough for
``--help`` (no SDK, no Gradio)."""

from __future__ import annotations

MAX_GAP = 2.0
"""Seconds: a longer silence in a recording is shortened to this on replay."""
READ_TIMEOUT = 30.0
"""Seconds without a byte before a stream counts as stalled."""
