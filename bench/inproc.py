"""Measurements without a browser, in this process: the replay pipeline's throughput
(4), many sessions replaying at once (5), replay timing (6, through
``bench/replay_timing.py``) and memory per session (7).

Every turn here goes through the app's own path: ``ChatSession.turn`` on a replay
``Runtime`` (ReplayAPI → ReplayTransport → the real `openai` client → driver →
adapter → transcript → coalesced UI values).
"""

from __future__ import annotations

import asyncio
import gc
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from streamchat.config import load_config
from streamchat.recording import FORMAT, VERSION
from streamchat.session import ChatSession, Runtime, Settings
from streamchat.sse import RawEvent
from streamchat.testing import synth

from .apps import ROOT, rss_bytes
from .browser import pct
from .fake import BUILDERS, reply_deltas

APIS = ("responses", "assistants", "chat")


def write_recording(path: Path, api: str, turns: list[tuple[str, list[tuple[float, RawEvent]]]]) -> None:
    """A one-stream-per-turn recording in the app's format (``source: synthetic``)."""
    lines: list[dict[str, Any]] = [
        {
            "kind": "header",
            "format": FORMAT,
            "version": VERSION,
            "api": api,
            "model": "bench-model",
            "config_sha256": None,
            "created": "2026-01-01T00:00:00Z",
            "app_version": "bench",
            "source": "synthetic",
        }
    ]
    for n, (user, events) in enumerate(turns):
        lines.append({"kind": "turn", "turn": n, "user": user})
        for t, raw in events:
            line: dict[str, Any] = {"kind": "event", "turn": n, "stream": 0, "t": t}
            if raw.event is not None:
                line["event"] = raw.event
            line["data"] = raw.data
            lines.append(line)
        end = max((t for t, _ in events), default=0.0)
        lines.append({"kind": "end", "turn": n, "t": round(end + 0.001, 4), "status": "completed"})
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")


def replay_runtime(folder: Path, *, speed: float) -> Runtime:
    config = load_config(ROOT / "assistant_config.yaml")
    return Runtime(Settings(config=config, mode="replay", replay_path=folder, speed=speed))


# -- 4. pipeline --------------------------------------------------------------------


async def _pipeline_once(session: ChatSession, prompt: str) -> tuple[float, float, int]:
    """One turn: (wall seconds, CPU seconds, UI states)."""
    states = 0
    cpu, start = time.process_time(), time.perf_counter()
    async for _ in session.turn(prompt, []):
        states += 1
    return time.perf_counter() - start, time.process_time() - cpu, states


def pipeline(sizes: tuple[int, ...] = (1000, 4000, 16000), repeats: int = 3) -> dict[str, Any]:
    """Raw events per second from the fake API to UI values, replay at speed 0, one
    session per reply (its first turn, which loads the file and imports what the
    `openai` client loads lazily, is not counted)."""
    out: dict[str, Any] = {"sizes": list(sizes), "apis": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        counts: dict[tuple[str, int], int] = {}
        for api in APIS:
            for n in sizes:
                raws = BUILDERS[api](reply_deltas(n, 5))
                counts[api, n] = len(raws)
                write_recording(folder / f"{api}-{n}.jsonl", api, [("pipeline", synth.timed(raws, step=0))])
        runtime = replay_runtime(folder, speed=0.0)

        async def run() -> None:
            for api in APIS:
                rows = {}
                for n in sizes:
                    session = runtime.new_session(f"{api}-{n}")
                    await _pipeline_once(session, "pipeline")
                    runs = sorted([await _pipeline_once(session, "pipeline") for _ in range(repeats)])
                    wall, cpu, states = runs[len(runs) // 2]
                    await session.close()
                    rows[str(n)] = {
                        "raw_events": counts[api, n],
                        "ui_states": states,
                        "seconds": wall,
                        "cpu_seconds": cpu,
                        "events_per_s": counts[api, n] / wall,
                        "events_per_cpu_s": counts[api, n] / cpu if cpu > 0 else float("nan"),
                    }
                big, mid = str(sizes[-1]), str(sizes[-2]) if len(sizes) > 1 else str(sizes[-1])
                out["apis"][api] = {
                    "rows": rows,
                    "growth": rows[big]["seconds"] / rows[mid]["seconds"],
                    "size_ratio": int(big) / int(mid),
                }

        asyncio.run(run())
    return out


# -- 5. concurrency, and 7. memory ----------------------------------------------------


def realistic_turn(api: str, deltas: int, seed: int) -> list[tuple[float, RawEvent]]:
    """A live-like pace: a pause before the first token, then ~35 ms per delta."""
    return synth.paced(BUILDERS[api](reply_deltas(deltas, 5)), seed=seed)


def concurrency(sessions: int = 100, deltas: int = 150, api: str = "responses") -> dict[str, Any]:
    """``sessions`` ChatSessions on one loop, each replaying the same recording at 1x."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        events = realistic_turn(api, deltas, seed=1)
        write_recording(folder / "conc.jsonl", api, [("concurrency", events)])
        runtime = replay_runtime(folder, speed=1.0)
        assert runtime.library is not None
        recorded = runtime.library.load("conc").turns[0].duration

        async def one() -> float:
            session = runtime.new_session("conc")
            start = time.perf_counter()
            async for _ in session.turn("concurrency", []):
                pass
            elapsed = time.perf_counter() - start
            await session.close()
            return elapsed

        async def run() -> list[float]:
            return list(await asyncio.gather(*(one() for _ in range(sessions))))

        durations = asyncio.run(run())
    ratios = [d / recorded for d in durations]
    return {
        "sessions": sessions,
        "recorded_s": recorded,
        "events_per_session": len(events),
        "p50": pct(ratios, 50),
        "p95": pct(ratios, 95),
        "max": max(ratios),
    }


def memory(sessions: int = 100, api: str = "responses", stream_deltas: int = 400) -> dict[str, Any]:
    """Python heap (tracemalloc) and RSS per replay session: idle (after one short
    turn, so its client and player exist) and streaming (a turn in flight)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        short = synth.timed(BUILDERS[api](reply_deltas(4, 5)), step=0)
        slow = synth.timed(BUILDERS[api](reply_deltas(stream_deltas, 5)), step=0.01)
        write_recording(folder / "mem.jsonl", api, [("hello", short), ("stream", slow)])
        runtime = replay_runtime(folder, speed=1.0)
        import os

        pid = os.getpid()

        async def run() -> dict[str, Any]:
            gc.collect()
            tracemalloc.start()
            base_heap, base_rss = tracemalloc.get_traced_memory()[0], rss_bytes(pid)
            live = [runtime.new_session("mem") for _ in range(sessions)]
            for session in live:
                async for _ in session.turn("hello", []):
                    pass
            gc.collect()
            idle_heap, idle_rss = tracemalloc.get_traced_memory()[0], rss_bytes(pid)
            history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "x"}]
            started = asyncio.Event()
            counter = {"n": 0}

            async def stream(session: Any) -> None:
                first = True
                async for _ in session.turn("stream", history):
                    if first:
                        first = False
                        counter["n"] += 1
                        if counter["n"] == sessions:
                            started.set()

            tasks = [asyncio.ensure_future(stream(s)) for s in live]
            await asyncio.wait_for(started.wait(), 60)
            await asyncio.sleep(0.2)  # every session mid-stream (a reply lasts stream_deltas / 100 s)
            stream_heap, stream_rss = tracemalloc.get_traced_memory()[0], rss_bytes(pid)
            await asyncio.gather(*tasks)
            tracemalloc.stop()
            for session in live:
                await session.close()
            return {
                "sessions": sessions,
                "idle_heap_bytes": (idle_heap - base_heap) / sessions,
                "idle_rss_bytes": (idle_rss - base_rss) / sessions,
                "streaming_heap_bytes": (stream_heap - base_heap) / sessions,
                "streaming_rss_bytes": (stream_rss - base_rss) / sessions,
            }

        return asyncio.run(run())


# -- 6. replay timing ---------------------------------------------------------------


def fidelity(
    recordings: tuple[str, ...] = ("04-markdown-long", "06-backend-chat", "07-backend-assistants"), paced_s: float = 3.0
) -> dict[str, Any]:
    """Each event's delivery time against its schedule at 1x (``bench/replay_timing.py``):
    bundled recordings, and one made here at 100 deltas/s for ``paced_s`` seconds."""
    from .replay_timing import replay

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = [ROOT / "recordings" / f"{name}.jsonl" for name in recordings]
        made = Path(tmp) / "paced-100-per-s.jsonl"
        raws = BUILDERS["responses"](reply_deltas(max(2, int(paced_s * 100)), 5))
        write_recording(made, "responses", [("paced", synth.timed(raws, step=0.01))])
        for path in [*paths, made]:
            if path.exists():
                rows[path.stem] = asyncio.run(replay(path, 1.0))
    p95s = [r["error_ms"]["p95"] for r in rows.values()]
    return {"recordings": rows, "p95_ms": max(p95s) if p95s else float("nan")}
