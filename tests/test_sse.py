"""The SSE decoder and encoder: bytes cut anywhere decode the same, and every frame the
encoder writes decodes back to the event it came from."""

from __future__ import annotations

from typing import Any

import pytest

from streamchat.sse import RawEvent, SSEDecoder, frame, frame_raw, terminator


def decode_all(chunks: list[bytes]) -> list[RawEvent]:
    decoder = SSEDecoder()
    out: list[RawEvent] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.flush()


def every_split(payload: bytes) -> list[list[bytes]]:
    """The payload whole, cut in two at every offset, and one byte at a time."""
    splits = [[payload], [bytes([b]) for b in payload]]
    splits += [[payload[:i], payload[i:]] for i in range(1, len(payload))]
    return splits


STREAM = (
    "event: response.output_text.delta\r\n"
    'data: {"type":"response.output_text.delta","delta":"こんにちは🎉"}\r\n'
    "\r\n"
    ": keep-alive comment\n"
    "\n"
    'data: {"choices":[],"usage":{"total_tokens":3}}\r'
    "\r"
    "event: multi\n"
    "data: first line\n"
    "data: second line\n"
    "\n"
    "data: [DONE]\n"
    "\n"
).encode()

EXPECTED = [
    RawEvent("response.output_text.delta", {"type": "response.output_text.delta", "delta": "こんにちは🎉"}),
    RawEvent(None, {"choices": [], "usage": {"total_tokens": 3}}),
    RawEvent("multi", "first line\nsecond line"),
    RawEvent(None, "[DONE]"),
]


def test_stream_decodes_the_same_however_the_bytes_are_cut() -> None:
    # Offsets include the inside of each multibyte character and the gap between \r and \n.
    assert b"\r\n" in STREAM and "🎉".encode() in STREAM
    for chunks in every_split(STREAM):
        assert decode_all(chunks) == EXPECTED, chunks


def test_multibyte_character_split_is_not_decoded_half_way() -> None:
    payload = 'data: {"delta":"界"}\n\n'.encode()
    cut = payload.index("界".encode()) + 1  # inside the three bytes of 界
    decoder = SSEDecoder()
    assert decoder.feed(payload[:cut]) == []
    assert decoder.feed(payload[cut:]) == [RawEvent(None, {"delta": "界"})]


def test_cr_at_end_of_a_chunk_waits_for_a_possible_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\r") == []
    # \n completes the \r\n pair: one line end, not an empty line that would end the event.
    assert decoder.feed(b"\ndata: 2\r\n") == []
    assert decoder.feed(b"\r\n") == [RawEvent(None, "1\n2")]


def test_lone_cr_line_ends() -> None:
    assert decode_all([b"event: a\rdata: {}\r\rdata: 2\r\r"]) == [RawEvent("a", {}), RawEvent(None, 2)]


def test_comments_and_unknown_fields_are_ignored() -> None:
    payload = b": comment\nid: 7\nretry: 1000\nfoo: bar\ndata: {}\n\n:only a comment\n\n"
    assert decode_all([payload]) == [RawEvent(None, {})]


def test_field_without_space_and_value_with_colons() -> None:
    assert decode_all([b"event:x\ndata:a: b : c\n\n"]) == [RawEvent("x", "a: b : c")]


def test_final_event_without_blank_line_counts_at_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'event: done\ndata: {"ok":true}') == []
    assert decoder.flush() == [RawEvent("done", {"ok": True})]
    assert decoder.flush() == []


def test_final_line_complete_but_event_not_terminated() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: [DONE]\n") == []
    assert decoder.flush() == [RawEvent(None, "[DONE]")]


def test_corrupt_json_is_kept_as_text() -> None:
    assert decode_all([b'data: {"half": \n\n']) == [RawEvent(None, '{"half": ')]


def test_empty_stream_and_blank_lines_yield_nothing() -> None:
    assert decode_all([b""]) == []
    assert decode_all([b"\n\n\r\n\r\n"]) == []


CASES: list[tuple[str | None, Any]] = [
    (None, {"choices": [{"delta": {"content": "日本語 and 👩‍💻"}}]}),
    ("thread.message.delta", {"delta": {"content": [{"text": {"value": "line one\nline two\n"}}]}}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "\r\n"}),
    ("error", {"message": "broken", "code": None}),
    ("done", "[DONE]"),
    (None, "[DONE]"),
    ("multi", "two\nlines"),
    (None, [1, 2.5, True, None]),
]


@pytest.mark.parametrize(("event", "data"), CASES)
def test_frame_round_trips_through_the_decoder(event: str | None, data: Any) -> None:
    raw = RawEvent(event, data)
    wire = frame(event, data)
    assert wire == frame_raw(raw)
    assert wire.endswith(b"\n\n")
    assert decode_all([wire]) == [raw]
    for chunks in every_split(wire):
        assert decode_all(chunks) == [raw]


def test_frames_back_to_back_decode_in_order() -> None:
    wire = b"".join(frame(e, d) for e, d in CASES)
    assert decode_all([wire]) == [RawEvent(e, d) for e, d in CASES]


def test_frame_keeps_non_ascii_unescaped() -> None:
    assert "こんにちは".encode() in frame(None, {"t": "こんにちは"})


def test_terminators_match_each_api() -> None:
    assert terminator("responses") == b""
    assert decode_all([terminator("assistants")]) == [RawEvent("done", "[DONE]")]
    assert decode_all([terminator("chat")]) == [RawEvent(None, "[DONE]")]
    assert all(r.is_done for r in decode_all([terminator("assistants") + terminator("chat")]))


class CountingBuffer(bytearray):
    """A bytearray that counts the bytes the decoder scans, appends, copies and moves."""

    work = 0

    def find(self, sub: Any, start: Any = None, end: Any = None) -> int:
        lo = 0 if start is None else start
        hi = len(self) if end is None else min(end, len(self))
        CountingBuffer.work += max(hi - lo, 0)
        return super().find(sub, lo, hi)

    def rfind(self, sub: Any, start: Any = None, end: Any = None) -> int:
        lo = 0 if start is None else start
        hi = len(self) if end is None else min(end, len(self))
        CountingBuffer.work += max(hi - lo, 0)
        return super().rfind(sub, lo, hi)

    def __iadd__(self, other: Any) -> CountingBuffer:  # type: ignore[misc]
        CountingBuffer.work += len(other)
        super().__iadd__(other)
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            CountingBuffer.work += len(range(*key.indices(len(self))))
        return super().__getitem__(key)

    def __delitem__(self, key: Any) -> None:
        if isinstance(key, slice):
            CountingBuffer.work += len(self)  # what is left moves to the front
        super().__delitem__(key)


class RescanningDecoder(SSEDecoder):
    """The quadratic mistake: every chunk searches the whole pending line again."""

    def feed(self, chunk: bytes) -> list[RawEvent]:
        self._scanned = 0
        return super().feed(chunk)


def long_line_work(decoder_type: type[SSEDecoder], chunks: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Bytes of buffer work to decode one event whose data line comes in ``chunks`` 1 KiB chunks."""
    import streamchat.sse as sse

    monkeypatch.setattr(sse, "bytearray", CountingBuffer, raising=False)
    CountingBuffer.work = 0
    decoder = decoder_type()
    assert isinstance(decoder._buffer, CountingBuffer)  # the buffer this test measures
    line = b"data: " + b"x" * (1024 * chunks - 6)
    events = [e for i in range(0, len(line), 1024) for e in decoder.feed(line[i : i + 1024])]
    events += decoder.feed(b"\n\n")
    assert len(events) == 1 and len(events[0].data) == len(line) - 6
    return CountingBuffer.work


def test_long_line_costs_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four times the line, four times the work (a rescan per chunk would be 16 times);
    counted in bytes touched, not measured in seconds."""
    small, large = (long_line_work(SSEDecoder, n, monkeypatch) for n in (256, 1024))
    assert large <= 4.5 * small, (small, large)
    # The measure does catch the quadratic variant.
    small, large = (long_line_work(RescanningDecoder, n, monkeypatch) for n in (256, 1024))
    assert large > 10 * small, (small, large)
