"""Replay speed where tests feel it: one recorded turn of many events, replayed through
the pytest plugin's client (``streamchat_replay.client``: a sync ``openai.OpenAI`` on
the plugin's server on 127.0.0.1, the SDK's own SSE parsing and chunk models), from the
request to the last chunk consumed. Issue 16: 1,000 events in under 20 ms.

The same request is also timed with a bare ``httpx`` client reading the bytes: the
plugin's server and framing alone, without the SDK's per-chunk model construction.
And the floor, with no HTTP at all: the same response's chunks (its ``data:`` lines,
captured once) parsed as the SDK parses them (``json.loads``, then
``openai._models.construct_type`` into ``ChatCompletionChunk``, what its ``Stream``
does per chunk), and ``json.loads`` alone."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from streamchat.pytest_plugin import DEFAULT_RULE, StreamchatReplay
from streamchat.testing import synth

from .fake import BUILDERS, reply_deltas
from .inproc import write_recording


def _once(replay: StreamchatReplay) -> tuple[float, float, int, str]:
    """One streamed call: (wall s, CPU s of this process (the server's thread too),
    chunks, text)."""
    cpu, start = time.process_time(), time.perf_counter()
    stream = replay.client.chat.completions.create(
        model="bench-model", messages=[{"role": "user", "content": "plugin"}], stream=True
    )
    parts, chunks = [], 0
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return time.perf_counter() - start, time.process_time() - cpu, chunks, "".join(parts)


def _raw_once(client: httpx.Client, url: str) -> tuple[float, int]:
    """The same request, bytes only: (wall s, bytes)."""
    body = {"model": "bench-model", "messages": [{"role": "user", "content": "plugin"}], "stream": True}
    start = time.perf_counter()
    size = 0
    with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
    return time.perf_counter() - start, size


def _data_lines(client: httpx.Client, url: str) -> list[bytes]:
    """The response's chunks as sent: the payload of every ``data:`` line but ``[DONE]``."""
    body = {"model": "bench-model", "messages": [{"role": "user", "content": "plugin"}], "stream": True}
    response = client.post(f"{url}/chat/completions", json=body)
    response.raise_for_status()
    return [line[6:] for line in response.content.split(b"\n") if line.startswith(b"data: ") and line != b"data: [DONE]"]


def _parse_floor(lines: list[bytes], models: bool) -> float:
    """Seconds to parse ``lines`` as the SDK does (``models``), or to ``json.loads`` them."""
    from openai._models import construct_type
    from openai.types.chat import ChatCompletionChunk

    start = time.perf_counter()
    if models:
        for line in lines:
            construct_type(type_=ChatCompletionChunk, value=json.loads(line))
    else:
        for line in lines:
            json.loads(line)
    return time.perf_counter() - start


def _stats(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50_s": statistics.median(values),
        "p95_s": values[min(len(values) - 1, round(0.95 * (len(values) - 1)))],
        "min_s": values[0],
    }


def plugin_replay(events: int = 1000, repeats: int = 30, time_limit: float = 30.0) -> dict[str, Any]:
    """``repeats`` replays (at most ``time_limit`` seconds of them) of one chat turn of
    about ``events`` events, after one warm-up call (server start, first imports)."""
    deltas = reply_deltas(max(2, events - 2), 5)  # plus the finish chunk and [DONE]
    raws = BUILDERS["chat"](deltas)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plugin.jsonl"
        write_recording(path, "chat", [("plugin", synth.timed(raws, step=0))])
        replay = StreamchatReplay(path, "replay", rule=DEFAULT_RULE, speed=0.0)
        try:
            _, _, _, text = _once(replay)
            if text != "".join(deltas):
                raise RuntimeError("the replayed text differs from the recorded one")
            walls, cpus, raws_s, chunks = [], [], [], 0
            sdk_parse, json_parse = [], []
            began = time.perf_counter()
            with httpx.Client(timeout=30) as raw_client:
                _raw_once(raw_client, replay.base_url)
                lines = _data_lines(raw_client, replay.base_url)
                _parse_floor(lines, models=True)
                for _ in range(repeats):
                    wall, cpu, chunks, _ = _once(replay)
                    walls.append(wall)
                    cpus.append(cpu)
                    raws_s.append(_raw_once(raw_client, replay.base_url)[0])
                    sdk_parse.append(_parse_floor(lines, models=True))
                    json_parse.append(_parse_floor(lines, models=False))
                    if time.perf_counter() - began > time_limit:
                        break
        finally:
            replay.close()
    return {
        "events": len(raws),
        "chunks": chunks,
        "runs": len(walls),
        **_stats(walls),
        "cpu_p50_s": statistics.median(cpus),
        "bytes_only": _stats(raws_s),
        "sdk_parse_only": {**_stats(sdk_parse), "chunks": len(lines)},
        "json_only": _stats(json_parse),
    }


if __name__ == "__main__":
    import json
    import os

    print(json.dumps({**plugin_replay(), "load": os.getloadavg()}, indent=2))
