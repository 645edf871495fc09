"""The fast replay path (issue 16): at speed 0 frames go out in chunks with the loop
given a turn between them, each recorded event is framed once, and the decoder's
plain-LF path reads exactly what the general one does."""

from __future__ import annotations

import asyncio
import random

from streamchat.replayapi import FAST_CHUNK, ReplayAPI, Script
from streamchat.sse import RawEvent, SSEDecoder, frame, frame_raw
from streamchat.testing import synth


async def test_speed_zero_sends_chunks_of_frames_and_lets_other_tasks_run_between_them() -> None:
    raws = synth.chat_stream([f"d{i} " for i in range(3 * FAST_CHUNK)])
    core = ReplayAPI(lambda request: Script(events=synth.timed(raws, step=0)), speed=0.0)
    body = {"messages": [{"role": "user", "content": "q"}], "stream": True}
    reply = await core.handle("POST", "/v1/chat/completions", body, {})
    assert reply.stream is not None
    ticks = 0

    async def other() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(other())
    await asyncio.sleep(0)
    chunks, seen_ticks = [], []
    try:
        async for chunk in reply.stream:
            chunks.append(chunk)
            seen_ticks.append(ticks)
    finally:
        task.cancel()
    assert b"".join(chunks) == b"".join(frame_raw(raw) for raw in raws)
    assert len(chunks) == -(-len(raws) // FAST_CHUNK)
    assert seen_ticks == sorted(set(seen_ticks))  # the other task ran between every two chunks
    decoder = SSEDecoder()
    assert [e for c in chunks for e in decoder.feed(c)] + decoder.flush() == raws


def test_an_event_is_framed_once_and_as_frame_frames_it() -> None:
    raw = RawEvent("response.output_text.delta", {"type": "response.output_text.delta", "delta": "é\nx"})
    first = frame_raw(raw)
    assert first == frame(raw.event, raw.data)
    assert frame_raw(raw) is first
    assert raw == RawEvent(raw.event, raw.data) and "framed" not in repr(raw)  # the cache is not part of the value


def test_plain_lf_and_crlf_framing_decode_alike_however_the_bytes_are_cut() -> None:
    rng = random.Random(16)
    raws = [
        *synth.responses_stream(["Hé", "llo ", "wörld\n", "end"]),
        *synth.assistants_stream(["a", "b"]),
        RawEvent(None, "not json {"),
        RawEvent("x", {"multi": "line\nvalue"}),
    ]
    lf = b"".join(frame_raw(raw) for raw in raws) + b": comment\n\nevent: e\ndata:\n\ndata:no-space\n\n"
    crlf = lf.replace(b"\n", b"\r\n")
    for _ in range(50):
        results = []
        for data in (lf, crlf):
            decoder = SSEDecoder()
            cuts = sorted(rng.sample(range(1, len(data)), 40))
            parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            results.append([e for p in parts for e in decoder.feed(p)] + decoder.flush())
        assert results[0] == results[1]
        assert results[0][: len(raws)] == raws
        assert results[0][len(raws) :] == [RawEvent(None, "no-space")]
