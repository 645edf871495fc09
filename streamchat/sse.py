"""Server-sent events: decode the bytes a provider sends, and frame them as OpenAI does.

One decoder serves the live drivers (and through them the recorder), and one encoder
serves the replay transport, the replay server and the tests' fake server, so a
recording goes back on the wire exactly as each API frames it:

- responses:  ``event: <type>`` + ``data: {json with "type"}``; no ``[DONE]``.
- assistants: ``event: thread.…`` + ``data: {json}``; ends ``event: done`` / ``data: [DONE]``.
- chat:       ``data: {json}`` only; ends ``data: [DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["responses", "assistants", "chat"]
APIS: tuple[Api, ...] = ("responses", "assistants", "chat")


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One server-sent event as the provider sent it."""

    event: str | None
    """The ``event:`` field, or None when the frame had none (Chat Completions)."""

    data: Any
    """The ``data:`` payload parsed as JSON; the raw string when it is not JSON
    (``[DONE]``, or a corrupt chunk, kept so nothing is lost)."""

    _framed: bytes | None = field(default=None, init=False, repr=False, compare=False)
    """``frame_raw``'s bytes, kept: a recorded event is replayed many times (``data`` is
    not changed once an event has been framed)."""

    @property
    def is_done(self) -> bool:
        return self.data == "[DONE]"


_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""The C scanner under ``json.loads``, called directly: one call per event, not three."""


def parse_data(data: str) -> Any:
    if data == "[DONE]":
        return data
    try:
        value, end = _scan(data, 0)
        if end == len(data):
            return value
    except (StopIteration, ValueError):
        pass
    try:  # surrounding whitespace, or not JSON at all
        return json.loads(data)
    except ValueError:
        return data


class SSEDecoder:
    """Incremental SSE decoder (WHATWG rules, the subset OpenAI uses): bytes in, events out.

    Works on bytes so a multibyte character split across network chunks is never
    decoded half-way.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0
        """Bytes at the start of the buffer already known to hold no line end."""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[RawEvent]:
        # Linear in the line's length however it is cut: the chunk is appended in place
        # and the search for a line end resumes where the last one gave up, so a 4 MiB
        # line in 1 KiB chunks is not copied or scanned again per chunk.
        buf = self._buffer
        # What is left from the last feed holds no line end, but for a final \r.
        plain = b"\r" not in chunk and not (buf and buf[-1] == 0x0D)
        buf += chunk
        if plain:
            return self._feed_lf()
        out: list[RawEvent] = []
        pos, size = 0, len(buf)
        start = self._scanned
        while start < size:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, nl if nl != -1 else size)
            if cr != -1:
                if cr + 1 == size:
                    start = cr  # a \r at the end may be half of \r\n: wait for more
                    break
                end, nxt = cr, cr + (2 if buf[cr + 1] == 0x0A else 1)
            elif nl != -1:
                end, nxt = nl, nl + 1
            else:
                start = size
                break
            event = self._line(buf[pos:end].decode("utf-8", errors="replace"))
            pos = start = nxt
            if event is not None:
                out.append(event)
        if pos:
            del buf[:pos]
        self._scanned = start - pos
        return out

    def _feed_lf(self) -> list[RawEvent]:
        """``feed`` when the buffer has no ``\r`` (how OpenAI and the replay frame events):
        every complete line at once, decoded together and split in C. A ``\n`` is never
        inside a UTF-8 sequence, so cutting there splits no character."""
        buf = self._buffer
        end = buf.rfind(b"\n", self._scanned)
        if end == -1:
            self._scanned = len(buf)
            return []
        lines = buf[:end].decode("utf-8", errors="replace").split("\n")
        del buf[: end + 1]
        self._scanned = len(buf)
        out: list[RawEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    joined = "\n".join(data)
                    name, self._event, self._data = self._event, None, []
                    data = self._data
                    if joined:
                        out.append(RawEvent(name, parse_data(joined)))
                else:
                    self._event = None
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith("event: "):
                self._event = line[7:]
            else:
                event = self._line(line)
                data = self._data
                if event is not None:
                    out.append(event)
        return out

    def flush(self) -> list[RawEvent]:
        """End of stream: a final event without its blank line still counts."""
        out = self.feed(b"\n\n") if self._buffer else []
        if self._data:
            event = self._line("")
            if event is not None:
                out.append(event)
        return out

    def _line(self, line: str) -> RawEvent | None:
        if not line:
            data = "\n".join(self._data)
            name, self._event, self._data = self._event, None, []
            if not data:
                return None  # the spec's rule: an event with empty data is not dispatched
            return RawEvent(name, parse_data(data))
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""Made once: ``json.dumps`` with options builds a new encoder per call."""


def _dumps(data: Any) -> str:
    if isinstance(data, str):
        return data
    return _ENCODER.encode(data)


def frame(event: str | None, data: Any) -> bytes:
    """One SSE frame. Multi-line strings become several ``data:`` lines, as the spec asks."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {part}" for part in _dumps(data).split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def frame_raw(raw: RawEvent) -> bytes:
    """``frame(raw.event, raw.data)``, computed once per event."""
    framed = raw._framed
    if framed is None:
        framed = frame(raw.event, raw.data)
        object.__setattr__(raw, "_framed", framed)
    return framed


def terminator(api: Api) -> bytes:
    """What ends a stream on the wire: nothing for Responses, ``[DONE]`` for the others."""
    if api == "assistants":
        return frame("done", "[DONE]")
    if api == "chat":
        return frame(None, "[DONE]")
    return b""
