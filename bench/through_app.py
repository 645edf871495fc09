"""Measurements 5 and 7 through the real app: ``python app.py`` in replay mode at 1x,
called by many API clients at once (Gradio's queue, this app's concurrency limit and
the turn runner, all in the way), and its process's memory while they stream.

Each call to ``/gradio_api/call/chat`` is its own Gradio session, so every client gets
its own ``ChatSession`` (and its own replay player), as every browser tab does.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .apps import AppProcess, cpu_seconds, rss_bytes
from .browser import pct
from .inproc import realistic_turn, write_recording


async def _call(client: httpx.AsyncClient, prompt: str) -> tuple[float, int, float, float]:
    """One chat call from request to its ``complete`` event: (seconds, updates, the
    longest wait for an update (the first one included), seconds to the first update)."""
    start = time.perf_counter()
    response = await client.post("gradio_api/call/chat", json={"data": [{"text": prompt}]})
    response.raise_for_status()
    event_id = response.json()["event_id"]
    updates = 0
    last, gap, first = start, 0.0, float("nan")
    async with client.stream("GET", f"gradio_api/call/chat/{event_id}") as stream:
        event = ""
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
                if event == "generating":
                    updates += 1
                    now = time.perf_counter()
                    gap, last = max(gap, now - last), now
                    if updates == 1:
                        first = now - start
                if event in ("complete", "error"):
                    break
    if event != "complete":
        raise RuntimeError(f"the chat call ended with {event!r}")
    return time.perf_counter() - start, updates, gap, first


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
    limits = httpx.Limits(max_connections=2 * sessions + 10, max_keepalive_connections=0)
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
    ratios = [seconds / recorded for seconds, *_ in results]
    return {
        "sessions": sessions,
        "failed": len(errors),
        "errors": sorted(set(errors))[:5],
        "recorded_s": recorded,
        "p50": pct(ratios, 50),
        "p95": pct(ratios, 95),
        "max": max(ratios, default=float("nan")),
        "updates_per_call_p50": pct([float(u) for _, u, *_ in results], 50),
        "longest_gap_p95_s": pct([g for _, _, g, _ in results], 95),
        "app_cpu_s": cpu,
        "wall_s": wall,
        "app_cpu_ms_per_update": 1000 * cpu / max(1, sum(u for _, u, *_ in results)),
        "rss_base_bytes": base,
        "streaming_rss_bytes_per_session": (peak[0] - base) / sessions,
        "idle_rss_bytes_per_session": (idle - base) / sessions,
    }


# -- the crowd (issue 16) --------------------------------------------------------------


def _lag_samples(path: Path, start: float, end: float) -> tuple[list[float], list[float]]:
    """The probe's samples between two wall-clock times: (loop lag, coalescer lag)."""
    lags, gauges = [], []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                at, lag, gauge = (float(x) for x in line.split())
            except ValueError:
                continue
            if start <= at <= end:
                lags.append(lag)
                gauges.append(gauge)
    return lags, gauges


def crowd(
    log_dir: Path,
    sizes: tuple[int, ...] = (100, 250, 500),
    deltas: int = 150,
    api: str = "responses",
    limit: int | None = None,
    time_limit: float = 120.0,
    ramps: tuple[float, ...] = (0.0,),
) -> dict[str, Any]:
    """Crowds of each size in turn, on one app (``python -m bench.crowd_app``: ``app.py`` with
    a loop-lag probe; its concurrency limit set to ``limit``, default the shipped one,
    raised to the largest crowd if less): every session replays the same recording at 1x through Gradio's queue and
    SSE. Per crowd: duration / recorded duration, the longest wait for an update, the
    loop lag and the coalescers' estimate of it, app CPU, RSS per streaming session.
    Each crowd arrives at once (ramp 0: every request within a few ms), and then again
    spread evenly over each other ``ramps`` seconds (visitors of a shared link); a
    session's duration is counted from its own request either way."""
    from streamchat.ui import CONCURRENCY_LIMIT

    limit = limit or max(CONCURRENCY_LIMIT, max(sizes))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        events = realistic_turn(api, deltas, seed=1)
        write_recording(folder / "conc.jsonl", api, [("concurrency", events)])
        recorded = max(t for t, _ in events)
        lag_file = folder / "lag.txt"
        env = {
            "STREAMCHAT_REPLAY": str(folder),
            "STREAMCHAT_SPEED": "1",
            "BENCH_LAG_FILE": str(lag_file),
            "BENCH_CONCURRENCY": str(limit),
        }
        app = AppProcess("-m bench.crowd_app", env, log_dir / "app-crowd.log")
        try:
            app.wait_ready()
            rows = asyncio.run(_crowds(app, sizes, recorded, lag_file, time_limit, ramps))
        finally:
            app.stop()
    return {"limit": limit, "recorded_s": recorded, "deltas": deltas, "crowds": rows}


async def _late(delay: float, call: Any) -> Any:
    await asyncio.sleep(delay)
    return await call


async def _crowds(
    app: AppProcess, sizes: tuple[int, ...], recorded: float, lag_file: Path, time_limit: float, ramps: tuple[float, ...]
) -> list[Any]:
    rows = []
    top = max(sizes)
    limits = httpx.Limits(max_connections=2 * top + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=app.url, timeout=time_limit, limits=limits) as client:
        await _call(client, "concurrency")  # warm: first-use imports, the recording's parse
        await asyncio.sleep(1.0)
        for sessions, ramp in [(n, r) for r in ramps for n in sizes]:
            pid = app.proc.pid
            base = rss_bytes(pid)
            peak = [base]
            done = threading.Event()

            def sample(pid: int = pid, peak: list[int] = peak, done: threading.Event = done) -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_bytes(pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            load = os.getloadavg()
            cpu = cpu_seconds(pid)
            client_cpu = time.process_time()
            began, wall_began = time.perf_counter(), time.time()
            try:
                starts = [ramp * i / sessions for i in range(sessions)]
                calls = asyncio.gather(*(_late(t, _call(client, "concurrency")) for t in starts), return_exceptions=True)
                outcomes = await asyncio.wait_for(calls, time_limit + ramp)
            finally:
                wall = time.perf_counter() - began
                cpu = cpu_seconds(pid) - cpu
                client_cpu = time.process_time() - client_cpu
                done.set()
                sampler.join()
            await asyncio.sleep(1.0)  # the probe writes every 0.5 s
            lags, gauges = _lag_samples(lag_file, wall_began, wall_began + wall)
            results = [r for r in outcomes if not isinstance(r, BaseException)]
            errors = [f"{type(r).__name__}: {r}" for r in outcomes if isinstance(r, BaseException)]
            ratios = [seconds / recorded for seconds, *_ in results]
            rows.append(
                {
                    "sessions": sessions,
                    "ramp_s": ramp,
                    "load_before": load,
                    "failed": len(errors),
                    "errors": sorted(set(errors))[:5],
                    "p50": pct(ratios, 50),
                    "p95": pct(ratios, 95),
                    "max": max(ratios, default=float("nan")),
                    "updates_per_call_p50": pct([float(u) for _, u, *_ in results], 50),
                    "longest_gap_p95_s": pct([g for _, _, g, _ in results], 95),
                    "first_update_p50_s": pct([f for *_, f in results], 50),
                    "first_update_p95_s": pct([f for *_, f in results], 95),
                    "loop_lag_p50_s": pct(lags, 50),
                    "loop_lag_p95_s": pct(lags, 95),
                    "loop_lag_max_s": max(lags, default=float("nan")),
                    "coalescer_lag_max_s": max(gauges, default=float("nan")),
                    "app_cpu_s": cpu,
                    "app_cpu_share": cpu / wall,
                    "client_cpu_share": client_cpu / wall,
                    "wall_s": wall,
                    "streaming_rss_bytes_per_session": (peak[0] - base) / sessions,
                }
            )
            await asyncio.sleep(2.0)  # let the app settle (closed sessions, GC) between crowds
    return rows


# -- per-call CPU: what a crowd's arrival costs (issue 16) -----------------------------


def per_call_cpu(log_dir: Path, calls: int = 100, deltas: int = 150, api: str = "responses") -> dict[str, Any]:
    """App CPU per API call, the calls one after another: this app replaying the crowd's
    recording at speed 0 (a visitor's whole turn, its updates coalesced to a few), and a
    bare streaming ``gr.ChatInterface`` (``bench/peers/hello_stream.py``: Gradio's own
    request, queue job, SSE stream and session state, nothing else). A crowd arriving at
    once needs about ``calls × this`` of the app's one core before its last visitor's
    first update."""
    out: dict[str, Any] = {"calls": calls}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_recording(folder / "conc.jsonl", api, [("concurrency", realistic_turn(api, deltas, seed=1))])
        for name, script, env in (
            ("app", "app.py", {"STREAMCHAT_REPLAY": str(folder), "STREAMCHAT_SPEED": "0"}),
            ("bare", "bench/peers/hello_stream.py", {}),
        ):
            app = AppProcess(script, env, log_dir / f"per-call-{name}.log")
            try:
                app.wait_ready()
                out[f"{name}_cpu_s"] = asyncio.run(_sequential(app, calls))
            finally:
                app.stop()
    return out


async def _sequential(app: AppProcess, calls: int) -> float:
    async with httpx.AsyncClient(base_url=app.url, timeout=60) as client:
        for _ in range(5):  # warm: first-use imports
            await _call(client, "concurrency")
        cpu = cpu_seconds(app.proc.pid)
        for _ in range(calls):
            await _call(client, "concurrency")
        return (cpu_seconds(app.proc.pid) - cpu) / calls
