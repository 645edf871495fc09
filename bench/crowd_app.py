"""``python -m bench.crowd_app``: ``python app.py`` with a probe on Gradio's event loop,
for the crowd benchmark (``bench/through_app.py``).

Every 10 ms a task on the loop that serves the app (uvicorn's, where Gradio runs the
chat handlers) sleeps and notes how late it woke: the loop lag every session sees.
With each sample goes the coalescers' own lag estimate (``streamchat.coalesce``), the
one that stretches the update interval. Samples go to ``BENCH_LAG_FILE`` as lines of
``wall-clock-time lag-s coalescer-lag-s``.

``BENCH_PROFILE``, when set, is where a cProfile of the server's thread goes at exit.
``BENCH_CONCURRENCY``, when set, replaces the app's concurrency limit
(``streamchat.ui.CONCURRENCY_LIMIT``), so a crowd larger than it is not simply queued.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERIOD = 0.01


async def _probe(path: str) -> None:
    from streamchat.coalesce import gauge_for

    loop = asyncio.get_running_loop()
    gauge = gauge_for(loop)
    lines: list[str] = []
    flushed = loop.time()
    with open(path, "a", encoding="utf-8") as out:
        while True:
            before = loop.time()
            await asyncio.sleep(PERIOD)
            now = loop.time()
            lines.append(f"{time.time():.4f} {now - before - PERIOD:.5f} {gauge.lag:.5f}\n")
            if now - flushed > 0.5:
                out.writelines(lines)
                out.flush()
                lines.clear()
                flushed = now


def main() -> None:
    import uvicorn

    lag_file = os.environ.get("BENCH_LAG_FILE")
    if lag_file:
        serve = uvicorn.Server.serve
        tasks: set[asyncio.Task[None]] = set()

        async def probed(self: uvicorn.Server, *args: object, **kwargs: object) -> None:
            task = asyncio.ensure_future(_probe(lag_file))
            tasks.add(task)
            try:
                await serve(self, *args, **kwargs)  # type: ignore[arg-type]
            finally:
                task.cancel()

        uvicorn.Server.serve = probed  # type: ignore[method-assign]
    profile_to = os.environ.get("BENCH_PROFILE")
    if profile_to:  # cProfile of the server's thread (the app's loop), written at exit
        import cProfile

        inner = uvicorn.Server.serve

        async def profiled(self: uvicorn.Server, *args: object, **kwargs: object) -> None:
            profiler = cProfile.Profile()
            profiler.enable()
            try:
                await inner(self, *args, **kwargs)  # type: ignore[arg-type]
            finally:
                profiler.disable()
                profiler.dump_stats(profile_to)

        uvicorn.Server.serve = profiled  # type: ignore[method-assign]
    limit = os.environ.get("BENCH_CONCURRENCY")
    if limit:
        import streamchat.ui

        streamchat.ui.CONCURRENCY_LIMIT = int(limit)
    sys.argv = [str(ROOT / "app.py")]
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")


if __name__ == "__main__":
    main()
