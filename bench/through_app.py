"""Measurements 5 and 7 through the real app: ``python app.py`` in replay mode at 1x,
called by many API clients at once (Gradio's queue, this app's concurrency limit and
the turn runner, all in the way), and its process's memory while they stream.

Each call to ``/gradio_api/call/chat`` is its own Gradio session, so every client gets
its own ``ChatSession`` (and its own replay player), as every browser tab does.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .apps import AppProcess, cpu_seconds, rss_bytes
from .browser import pct
from .inproc import realistic_turn, write_recording


async def _call(client: httpx.AsyncClient, prompt: str) -> tuple[float, int]:
    """One chat call from request to its ``complete`` event: (seconds, updates)."""
    start = time.perf_counter()
    response = await client.post("gradio_api/call/chat", json={"data": [prompt]})
    response.raise_for_status()
    event_id = response.json()["event_id"]
    updates = 0
    async with client.stream("GET", f"gradio_api/call/chat/{event_id}") as stream:
        event = ""
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
                updates += event == "generating"
                if event in ("complete", "error"):
                    break
    if event != "complete":
        raise RuntimeError(f"the chat call ended with {event!r}")
    return time.perf_counter() - start, updates


def concurrency(log_dir: Path, sessions: int = 100, deltas: int = 150, api: str = "responses") -> dict[str, Any]:
    """``sessions`` API clients replay one recording at 1x through the app at once:
    each call's duration / the recorded duration; and the app's RSS per session, idle
    (after the calls) and streaming (its peak during them)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        events = realistic_turn(api, deltas, seed=1)
        write_recording(folder / "conc.jsonl", api, [("concurrency", events)])
        recorded = max(t for t, _ in events)
        app = AppProcess("app.py", {"STREAMCHAT_REPLAY": str(folder), "STREAMCHAT_SPEED": "1"}, log_dir / "app-concurrency.log")
        try:
            app.wait_ready()
            return asyncio.run(_drive(app, sessions, recorded))
        finally:
            app.stop()


async def _drive(app: AppProcess, sessions: int, recorded: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=2 * sessions + 10, max_keepalive_connections=2 * sessions + 10)
    async with httpx.AsyncClient(base_url=app.url, timeout=120, limits=limits) as client:
        await _call(client, "concurrency")  # warm: first-use imports, the recording's parse
        await asyncio.sleep(0.5)
        pid = app.proc.pid
        base = rss_bytes(pid)
        peak = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu = cpu_seconds(pid)
        began = time.perf_counter()
        try:
            outcomes = await asyncio.gather(*(_call(client, "concurrency") for _ in range(sessions)), return_exceptions=True)
        finally:
            wall = time.perf_counter() - began
            cpu = cpu_seconds(pid) - cpu
            done.set()
            sampler.join()
        await asyncio.sleep(1.0)
        idle = rss_bytes(pid)
    results = [r for r in outcomes if not isinstance(r, BaseException)]
    errors = [f"{type(r).__name__}: {r}" for r in outcomes if isinstance(r, BaseException)]
    ratios = [seconds / recorded for seconds, _ in results]
    return {
        "sessions": sessions,
        "failed": len(errors),
        "errors": sorted(set(errors))[:5],
        "recorded_s": recorded,
        "p50": pct(ratios, 50),
        "p95": pct(ratios, 95),
        "max": max(ratios, default=float("nan")),
        "updates_per_call_p50": pct([float(u) for _, u in results], 50),
        "app_cpu_s": cpu,
        "wall_s": wall,
        "app_cpu_ms_per_update": 1000 * cpu / max(1, sum(u for _, u in results)),
        "rss_base_bytes": base,
        "streaming_rss_bytes_per_session": (peak[0] - base) / sessions,
        "idle_rss_bytes_per_session": (idle - base) / sessions,
    }
