"""The benchmark: this app beside ``gr.load_chat`` and the ``llm_openai`` demo pattern.

    python -m bench.run            # everything (about 10 minutes on 2 cores)
    python -m bench.run --quick    # tiny sizes: proves the harness works, figures mean little
    python -m bench.run --only pipeline,fidelity
    python -m bench.run --doc docs/performance.md   # and put the tables in the doc

Prints the tables and a PASS/MISS line per target, and writes every figure to
bench/results/latest.json. What each measurement is: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import inproc, plugin_replay, report, through_app
from bench.apps import APP_TARGETS, TARGETS, AppProcess, Target, start_targets, startup

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "bench" / "results"
SECTIONS = ("pipeline", "plugin", "concurrency", "crowd", "fidelity", "memory", "browser")
"""In this order: the in-process sections first, while this process's heap is small
(the browser section leaves Playwright's objects behind, and a bigger heap makes every
full garbage collection during a pipeline turn dearer)."""


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is; ``QUICK`` for the smoke test."""

    long_deltas: int = 4000
    paced_rate: float = 100.0
    peer_timeout: float = 180.0
    fast_repeats: int = 3
    first_token_runs: int = 20
    stop_runs: int = 3
    stop_wait: float = 3.0
    pipeline_sizes: tuple[int, ...] = (1000, 4000, 16000)
    pipeline_repeats: int = 3
    sessions: int = 100
    session_deltas: int = 150
    crowds: tuple[int, ...] = (100, 250, 500)
    crowd_ramps: tuple[float, ...] = (0.0, 2.0)
    per_call_calls: int = 100
    plugin_events: int = 1000
    plugin_repeats: int = 30
    memory_sessions: int = 100
    memory_stream_deltas: int = 400
    fidelity_recordings: tuple[str, ...] = ("04-markdown-long", "06-backend-chat", "07-backend-assistants")
    fidelity_paced_s: float = 3.0
    startup_runs: int = 3


FULL = Sizes()
QUICK = Sizes(
    long_deltas=200,
    peer_timeout=60.0,
    fast_repeats=1,
    first_token_runs=3,
    stop_runs=1,
    stop_wait=1.0,
    pipeline_sizes=(100, 400, 1600),
    pipeline_repeats=1,
    sessions=10,
    session_deltas=10,
    crowds=(5, 10),
    crowd_ramps=(0.0,),
    per_call_calls=5,
    plugin_events=100,
    plugin_repeats=3,
    memory_sessions=10,
    memory_stream_deltas=100,
    fidelity_recordings=(),
    fidelity_paced_s=0.3,
    startup_runs=1,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- browser ------------------------------------------------------------------------


def run_browser(sizes: Sizes, targets: list[Target], log_dir: Path) -> dict[str, Any]:
    """Measurements 1-3 for every target, all apps up at once, one fake server."""
    from playwright.sync_api import sync_playwright

    from bench import browser as b
    from bench.fake import BenchFake, serve

    fake = BenchFake(speed=1.0)
    server = serve(fake)
    apps: dict[str, AppProcess] = {}
    out: dict[str, Any] = {name.name: {} for name in targets}
    try:
        log(f"starting {len(targets)} apps")
        apps = start_targets(targets, server.url, log_dir)
        with sync_playwright() as pw:
            chromium = b.launch(pw)
            runs = b.Runs(1)

            # 2. first token: round robin, so the machine's noise falls on every target alike.
            log("first token")
            pages = {t.name: b.ChatPage(chromium, apps[t.name], t, fake) for t in targets}
            try:
                for page in pages.values():
                    page.open()
                delays: dict[str, list[float]] = {t.name: [] for t in targets}
                for _ in range(sizes.first_token_runs):
                    for t in targets:
                        result = b.first_token(pages[t.name], runs, count=1)
                        delays[t.name] += result["all_s"]
                for t in targets:
                    values = delays[t.name]
                    out[t.name]["first_token"] = {
                        "runs": sizes.first_token_runs,
                        "ok": len(values),
                        "p50_s": b.pct(values, 50),
                        "p95_s": b.pct(values, 95),
                        "all_s": values,
                    }
            finally:
                for page in pages.values():
                    page.close()

            # 1. the long reply as fast as possible, one target at a time.
            for t in targets:
                is_app = t in APP_TARGETS
                repeats = sizes.fast_repeats if is_app else 1
                timeout = 60.0 if is_app else sizes.peer_timeout
                log(f"long reply, as fast as possible: {t.name}")
                rows = []
                for _ in range(repeats):
                    with b.opened(chromium, apps[t.name], t, fake) as page:
                        rows.append(b.long_reply(page, runs, n=sizes.long_deltas, rate=0, timeout=timeout))
                out[t.name]["fast"] = _median_row(rows)

            # 1. the same reply at 100 deltas/s, one target at a time.
            for t in targets:
                log(f"long reply at {sizes.paced_rate:g} deltas/s: {t.name}")
                with b.opened(chromium, apps[t.name], t, fake) as page:
                    timeout = sizes.long_deltas / sizes.paced_rate + 60
                    out[t.name]["paced"] = b.long_reply(page, runs, n=sizes.long_deltas, rate=sizes.paced_rate, timeout=timeout)

            # 3. Stop, while the upstream streams and while it is silent; and a closed tab.
            for t in targets:
                log(f"stop: {t.name}")
                page = b.ChatPage(chromium, apps[t.name], t, fake)
                page.open()
                out[t.name]["tab_closed"] = b.tab_closed(page, runs, wait=max(sizes.stop_wait, 3.0))
                count = sizes.stop_runs if t in APP_TARGETS else 1
                for case in ("streaming", "silent"):
                    with b.opened(chromium, apps[t.name], t, fake) as page:
                        row = b.stop(page, runs, case=case, count=count, wait=sizes.stop_wait)
                    out[t.name][f"stop_{case}"] = row
                    if not row["stop_button"]:
                        out[t.name]["stop_silent"] = {"case": "silent", "stop_button": False}
                        break
            chromium.close()
    finally:
        for app in apps.values():
            app.stop()
        server.stop()
    for name, app in apps.items():
        out[name]["startup_s"] = app.startup
    return out


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time (its own CPU figures with it), plus all walls."""
    done = [r for r in rows if r.get("wall_s") is not None]
    if not done:
        return {**rows[0], "runs": len(rows)}
    done.sort(key=lambda r: r["wall_s"])
    row = dict(done[len(done) // 2])
    row["runs"] = len(rows)
    row["all_wall_s"] = [r.get("wall_s") for r in rows]
    return row


# -- the rest -------------------------------------------------------------------------


def run_section(name: str, sizes: Sizes, targets: list[Target], log_dir: Path) -> Any:
    if name == "browser":
        return run_browser(sizes, targets, log_dir)
    if name == "pipeline":
        return inproc.pipeline(sizes.pipeline_sizes, sizes.pipeline_repeats)
    if name == "concurrency":
        log("concurrency: in-process sessions")
        local = inproc.concurrency(sizes.sessions, sizes.session_deltas)
        log("concurrency: through the app")
        app = through_app.concurrency(log_dir, sizes.sessions, sizes.session_deltas)
        return {"in_process": local, "through_app": app}
    if name == "plugin":
        return plugin_replay.plugin_replay(sizes.plugin_events, sizes.plugin_repeats)
    if name == "crowd":
        log(f"crowd: {', '.join(map(str, sizes.crowds))} sessions through the app")
        crowd = through_app.crowd(log_dir, sizes.crowds, sizes.session_deltas, ramps=sizes.crowd_ramps)
        log("crowd: app CPU per call")
        crowd["per_call"] = through_app.per_call_cpu(log_dir, sizes.per_call_calls, sizes.session_deltas)
        return crowd
    if name == "fidelity":
        return inproc.fidelity(sizes.fidelity_recordings, sizes.fidelity_paced_s)
    if name == "memory":
        log("memory: in-process sessions")
        local = inproc.memory(sizes.memory_sessions, stream_deltas=sizes.memory_stream_deltas)
        log("start-up time")
        return {"in_process": local, "startup": startup(log_dir, sizes.startup_runs)}
    raise ValueError(name)


def main(argv: list[str] | None = None, *, emit: Callable[[str], None] = print) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test's)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated browser targets")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="where the JSON goes")
    parser.add_argument("--doc", type=Path, help="also put the tables into this Markdown file, between its bench markers")
    args = parser.parse_args(argv)
    if argv is None:  # run as a program: let `kill` / `timeout` unwind, so the apps stop too
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    sections = [s for s in SECTIONS if s in wanted]
    targets = [TARGETS[name.strip()] for name in args.targets.split(",") if name.strip()]
    sizes = QUICK if args.quick else FULL
    log_dir = args.out.parent / "logs"
    results: dict[str, Any] = {
        "meta": {
            "command": "python -m bench.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
            "quick": args.quick,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "cpus": os.cpu_count(),
            "load_before": os.getloadavg(),
            "sizes": {k: getattr(sizes, k) for k in Sizes.__dataclass_fields__},
        }
    }
    began = time.perf_counter()
    for name in sections:
        log(f"== {name}")
        start = time.perf_counter()
        results["meta"].setdefault("section_load", {})[name] = os.getloadavg()
        results[name] = run_section(name, sizes, targets, log_dir)
        results["meta"].setdefault("section_seconds", {})[name] = round(time.perf_counter() - start, 1)
    results["meta"]["seconds"] = round(time.perf_counter() - began, 1)
    results["meta"]["load_after"] = os.getloadavg()
    results["verdicts"] = report.verdicts(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    rendered = report.render(results)
    emit(rendered)
    emit(f"\nwrote {args.out}")
    if args.doc is not None:
        report.into_doc(args.doc, rendered)
        emit(f"updated {args.doc}")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
