"""Turn the benchmark's figures into tables (Markdown, so docs/performance.md can hold
them as printed) and one PASS/MISS line per target of issue 7."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

APP = ("app/responses", "app/assistants", "app/chat")
LOAD_CHAT = "gr.load_chat"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None


def ms(value: Any) -> str:
    v = _num(value)
    return "–" if v is None else f"{v * 1000:.0f} ms"


def sec(value: Any, digits: int = 2) -> str:
    v = _num(value)
    return "–" if v is None else f"{v:.{digits}f} s"


def mib(value: Any) -> str:
    v = _num(value)
    return "–" if v is None else f"{v / 1024 / 1024:.1f} MiB"


def kib(value: Any) -> str:
    v = _num(value)
    return "–" if v is None else f"{v / 1024:.0f} KiB"


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- verdicts -------------------------------------------------------------------------


def _verdict(name: str, ok: bool | None, shown: str, goal: str) -> dict[str, Any]:
    return {"target": name, "verdict": "n/a" if ok is None else ("PASS" if ok else "MISS"), "result": shown, "goal": goal}


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    browser = results.get("browser") or {}
    apps = [a for a in APP if a in browser]
    peer = browser.get(LOAD_CHAT, {})
    if apps and peer:
        peer_wall = _num(peer.get("fast", {}).get("wall_s")) or _num(peer.get("fast", {}).get("wall_s_at_least"))
        walls = {a: _num(browser[a].get("fast", {}).get("wall_s")) for a in apps}
        if peer_wall and all(walls.values()):
            worst = max(walls, key=lambda a: walls[a] or 0)
            ratio = (walls[worst] or 0) / peer_wall
            bound = "" if _num(peer.get("fast", {}).get("wall_s")) else " (gr.load_chat timed out: its time is a lower bound)"
            out.append(
                _verdict(
                    "(1) long reply fully shown",
                    ratio <= 0.1,
                    f"slowest backend {worst} {sec(walls[worst])} vs gr.load_chat {sec(peer_wall, 1)}: ratio {ratio:.3f}{bound}",
                    "≤ 1/10 of gr.load_chat",
                )
            )
        else:
            out.append(_verdict("(1) long reply fully shown", False, "a run did not finish", "≤ 1/10 of gr.load_chat"))
    if apps:
        lags = {a: _num(browser[a].get("paced", {}).get("lag_end_s")) for a in apps}
        if all(v is not None for v in lags.values()):
            worst = max(lags, key=lambda a: lags[a] or 0)
            out.append(
                _verdict("(1) lag at 100 deltas/s", (lags[worst] or 0) < 0.2, f"worst {worst} {ms(lags[worst])}", "< 200 ms")
            )
        else:
            out.append(_verdict("(1) lag at 100 deltas/s", False, "a paced run did not finish", "< 200 ms"))
    if apps and peer.get("first_token"):
        ref = _num(peer["first_token"].get("p50_s"))
        p50s = {a: _num(browser[a].get("first_token", {}).get("p50_s")) for a in apps}
        worst = max(p50s, key=lambda a: p50s[a] or math.inf)
        ok = ref is not None and all(v is not None and v <= ref for v in p50s.values())
        p95 = _num(browser[worst]["first_token"].get("p95_s"))
        ref95 = _num(peer["first_token"].get("p95_s"))
        out.append(
            _verdict(
                "(2) first token",
                ok,
                f"p50: slowest backend {worst} {ms(p50s[worst])} vs gr.load_chat {ms(ref)} (p95 {ms(p95)} vs {ms(ref95)})",
                "p50 not slower than gr.load_chat",
            )
        )
    if apps:
        worst_value, worst_where, ok = 0.0, "", True
        for a in apps:
            for case in ("stop_silent", "stop_streaming"):
                row = browser[a].get(case, {})
                value = _num(row.get("max_s"))
                if value is None or row.get("closed", 0) < row.get("runs", 1):
                    ok, worst_where, worst_value = False, f"{a} {case}: not closed", math.inf
                    continue
                if value > worst_value:
                    worst_value, worst_where = value, f"{a} {case.replace('stop_', '')}"
                ok = ok and value < 0.2
        shown = worst_where if math.isinf(worst_value) else f"slowest of all runs: {worst_where} {ms(worst_value)}"
        out.append(_verdict("(3) Stop closes the upstream", ok, shown, "< 200 ms, silent and streaming"))
    pipeline = results.get("pipeline")
    if pipeline:
        rates = {api: min(r["events_per_s"] for r in row["rows"].values()) for api, row in pipeline["apis"].items()}
        growth = {api: row["growth"] for api, row in pipeline["apis"].items()}
        low = min(rates, key=lambda a: rates[a])
        high = max(growth, key=lambda a: growth[a])
        out.append(
            _verdict(
                "(4) pipeline throughput",
                rates[low] >= 150_000,
                f"lowest {low} {rates[low]:,.0f} events/s",
                "≥ 150,000 events/s (issue 16; issue 7 asked 20,000)",
            )
        )
        sizes = pipeline["sizes"]
        out.append(
            _verdict(
                "(4) linear growth",
                growth[high] <= 4.5,
                f"{sizes[-1]} vs {sizes[-2]} deltas: worst {high} {growth[high]:.2f}x",
                "≤ 4.5x",
            )
        )
    concurrency = results.get("concurrency")
    if concurrency:
        for key, label in (("through_app", "through the app"), ("in_process", "in-process sessions")):
            row = concurrency.get(key)
            if not row:
                continue
            p95 = _num(row.get("p95"))
            failed = row.get("failed", 0)
            shown = f"{label}: p50 {row['p50']:.2f}, p95 {row['p95']:.2f}" + (f", {failed} failed" if failed else "")
            out.append(
                _verdict(
                    f"(5) {row['sessions']} sessions at 1x", p95 is not None and p95 <= 1.2 and not failed, shown, "p95 ≤ 1.2"
                )
            )
    plugin = results.get("plugin")
    if plugin:
        p50 = _num(plugin.get("p50_s"))
        raw = _num(plugin.get("bytes_only", {}).get("p50_s"))
        out.append(
            _verdict(
                f"(16) {plugin['events']} events through the pytest plugin's client",
                p50 is not None and p50 < 0.02,
                f"p50 {ms(p50)} (the same bytes without the SDK: {ms(raw)}; the SDK's parsing alone, no HTTP: "
                f"{ms(_num(plugin.get('sdk_parse_only', {}).get('p50_s')))})",
                "< 20 ms",
            )
        )
    crowd = results.get("crowd")
    if crowd:
        for row in crowd["crowds"]:
            p95 = _num(row.get("p95"))
            failed = row.get("failed", 0)
            shown = f"p50 {row['p50']:.2f}, p95 {row['p95']:.2f}" + (f", {failed} failed" if failed else "")
            out.append(
                _verdict(
                    f"(16) crowd of {row['sessions']} at 1x"
                    + (f", arriving over {row['ramp_s']:g} s" if row.get("ramp_s") else ""),
                    p95 is not None and p95 <= 1.2 and not failed,
                    shown,
                    "p95 ≤ 1.2",
                )
            )
    fidelity = results.get("fidelity")
    if fidelity:
        p95 = _num(fidelity.get("p95_ms"))
        out.append(
            _verdict(
                "(6) replay timing",
                p95 is not None and p95 < 10,
                f"worst recording p95 {p95:.2f} ms" if p95 is not None else "–",
                "p95 < 10 ms",
            )
        )
    return out


# -- rendering ------------------------------------------------------------------------


def _pipeline_cell(row: dict[str, Any]) -> str:
    cpu = _num(row.get("events_per_cpu_s"))
    extra = f" · {cpu:,.0f}/CPU-s" if cpu is not None else ""
    return f"{row['events_per_s']:,.0f}/s{extra} · {row['ui_states']} UI states"


def render(results: dict[str, Any]) -> str:
    parts: list[str] = []
    meta = results.get("meta", {})
    load = meta.get("load_before")
    parts.append(
        f"`{meta.get('command', 'python -m bench.run')}` · {meta.get('started', '')} · Python {meta.get('python', '')} · "
        f"{meta.get('cpus', '?')} CPUs · load average before {load[0]:.1f} · {meta.get('seconds', 0):.0f} s"
        if load
        else f"`{meta.get('command', '')}`"
    )
    section_load = meta.get("section_load")
    if section_load:
        parts.append(
            "Load average (1 min) as each section began: "
            + ", ".join(f"{name} {values[0]:.1f}" for name, values in section_load.items())
        )
    browser = results.get("browser")
    if browser:
        names = list(browser)
        rows = []

        def row(label: str, get: Any) -> None:
            rows.append([label, *[get(browser[n]) for n in names]])

        def fast_wall(r: dict[str, Any]) -> str:
            f = r.get("fast", {})
            if f.get("wall_s") is not None:
                return sec(f["wall_s"])
            return f"> {sec(f.get('wall_s_at_least') or f.get('timeout_s'), 0)}" if f else "–"

        def stop_cell(case: str) -> Any:
            def get(r: dict[str, Any]) -> str:
                s = r.get(case)
                if not s:
                    return "–"
                if not s.get("stop_button", True):
                    return "no Stop button"
                if s.get("closed", 0) == 0:
                    if s.get("not_closed_within_s") is None:
                        return "the reply never showed"
                    return f"not closed in {s.get('not_closed_within_s'):g} s"
                text = f"{ms(s.get('p50_s'))} (max {ms(s.get('max_s'))})"
                if s.get("closed", 0) < s.get("runs", 0):
                    text += f", {s['runs'] - s['closed']} of {s['runs']} not closed"
                return text

            return get

        def tab_cell(r: dict[str, Any]) -> str:
            s = r.get("tab_closed")
            if not s:
                return "–"
            if s.get("closed"):
                return ms(s.get("delay_s"))
            return f"not closed in {s.get('not_closed_within_s', 0):g} s" if "not_closed_within_s" in s else s.get("error", "–")

        n = meta.get("sizes", {}).get("long_deltas", 4000)
        row(f"{n}-delta reply, as fast as possible: fully shown", fast_wall)
        row("… browser CPU (all Chromium processes)", lambda r: sec(r.get("fast", {}).get("browser_cpu_s")))
        row("… app server CPU", lambda r: sec(r.get("fast", {}).get("server_cpu_s")))
        row("… fake server: first to last delta sent", lambda r: sec(r.get("fast", {}).get("server_stream_s"), 3))
        row("same reply at 100 deltas/s: browser lag at the end", lambda r: ms(r.get("paced", {}).get("lag_end_s")))
        row("first token p50", lambda r: ms(r.get("first_token", {}).get("p50_s")))
        row("first token p95", lambda r: ms(r.get("first_token", {}).get("p95_s")))
        row("Stop → upstream closed, upstream silent", stop_cell("stop_silent"))
        row("Stop → upstream closed, upstream streaming", stop_cell("stop_streaming"))
        row("tab closed → upstream closed (streaming)", tab_cell)
        row("start-up (all apps started at once)", lambda r: sec(r.get("startup_s"), 1))
        parts.append("### Browser (headless Chromium)\n\n" + table(["", *names], rows))
    pipeline = results.get("pipeline")
    if pipeline:
        sizes = pipeline["sizes"]
        rows = []
        for api, data in pipeline["apis"].items():
            cells = [_pipeline_cell(data["rows"][str(s)]) for s in sizes]
            rows.append([api, *cells, f"{data['growth']:.2f}x"])
        head = ["backend", *[f"{s} deltas" for s in sizes], f"time {sizes[-1]} / {sizes[-2]}" if len(sizes) > 1 else "growth"]
        parts.append("### Pipeline: replay at speed 0, raw events → UI states\n\n" + table(head, rows))
    concurrency = results.get("concurrency")
    if concurrency:
        rows = []
        for key, label in (
            ("through_app", "through the app (Gradio queue, API clients)"),
            ("in_process", "in-process ChatSessions, one loop"),
        ):
            r = concurrency.get(key)
            if r:
                failed = f", {r['failed']} failed" if r.get("failed") else ""
                rows.append(
                    [
                        label,
                        str(r["sessions"]),
                        f"{r['recorded_s']:.2f} s",
                        f"{r['p50']:.3f}",
                        f"{r['p95']:.3f}",
                        f"{r['max']:.3f}{failed}",
                    ]
                )
        parts.append(
            "### Sessions replaying at 1x at once: duration / recorded duration\n\n"
            + table(["how", "sessions", "recorded", "p50", "p95", "max"], rows)
        )
    plugin = results.get("plugin")
    if plugin:
        raw = plugin.get("bytes_only", {})
        rows = [
            [
                "pytest plugin's client (`openai.OpenAI`, the SDK's chunk models)",
                str(plugin["events"]),
                ms(plugin.get("p50_s")),
                ms(plugin.get("p95_s")),
                ms(plugin.get("cpu_p50_s")),
            ],
            ["the same request read as bytes (`httpx`)", str(plugin["events"]), ms(raw.get("p50_s")), ms(raw.get("p95_s")), "–"],
        ]
        for key, label in (
            ("sdk_parse_only", "no HTTP: its chunks parsed as the SDK does (`json.loads` + `construct_type`)"),
            ("json_only", "no HTTP: its chunks through `json.loads` only"),
        ):
            floor = plugin.get(key)
            if floor:
                rows.append(
                    [
                        label,
                        str(plugin.get("sdk_parse_only", {}).get("chunks", "–")),
                        ms(floor.get("p50_s")),
                        ms(floor.get("p95_s")),
                        "–",
                    ]
                )
        parts.append(
            f"### One recorded turn through the pytest plugin's server, speed 0 ({plugin['runs']} runs)\n\n"
            + table(["client", "events", "p50", "p95", "CPU p50 (client and server)"], rows)
        )
    crowd = results.get("crowd")
    if crowd:
        rows = []
        for r in crowd["crowds"]:
            failed = f", {r['failed']} failed" if r.get("failed") else ""
            rows.append(
                [
                    str(r["sessions"]),
                    f"{r.get('ramp_s', 0):g} s",
                    f"{r['load_before'][0]:.1f}",
                    f"{r['p50']:.3f}",
                    f"{r['p95']:.3f}",
                    f"{r['max']:.3f}{failed}",
                    f"{r['updates_per_call_p50']:.0f}",
                    sec(r.get("first_update_p95_s")),
                    sec(r.get("longest_gap_p95_s")),
                    f"{ms(r.get('loop_lag_p50_s'))} / {ms(r.get('loop_lag_p95_s'))} / {ms(r.get('loop_lag_max_s'))}",
                    ms(r.get("coalescer_lag_max_s")),
                    f"{100 * r['app_cpu_share']:.0f} %",
                    f"{100 * r['client_cpu_share']:.0f} %" if "client_cpu_share" in r else "–",
                    kib(r.get("streaming_rss_bytes_per_session")),
                ]
            )
        head = [
            "sessions",
            "arriving over",
            "load",
            "p50",
            "p95",
            "max",
            "updates per session",
            "first update, p95",
            "longest wait for an update, p95",
            "loop lag p50 / p95 / max",
            "coalescers' lag, max",
            "app CPU (of one core)",
            "bench client CPU",
            "RSS per streaming session",
        ]
        parts.append(
            f"### Crowd: sessions replaying a {crowd['recorded_s']:.2f} s recording ({crowd['deltas']} deltas) at 1x "
            f"through the app at once, duration / recorded duration (concurrency limit {crowd['limit']})\n\n" + table(head, rows)
        )
        per = crowd.get("per_call")
        if per:
            budget = 1.2 * crowd["recorded_s"]
            lines = [
                f"App CPU per visitor, {per['calls']} API calls one after another: this app "
                f"{ms(per['app_cpu_s'])} (a whole turn of the recording above, at speed 0), a bare "
                f"streaming `gr.ChatInterface` {ms(per['bare_cpu_s'])} (Gradio's own request, queue job, "
                "SSE stream and session state). "
                f"For p95 ≤ 1.2× a crowd's whole work must be done within {budget:.1f} s (1.2 × the "
                "recording) on the app's one core: at these costs (a lower bound: at 1x a turn sends "
                f"more updates) at most about {budget / per['app_cpu_s']:.0f} visitors at this app's cost, "
                f"{budget / per['bare_cpu_s']:.0f} at Gradio's own."
            ]
            parts[-1] += "\n\n" + " ".join(lines)
    fidelity = results.get("fidelity")
    if fidelity:
        rows = []
        for name, r in fidelity["recordings"].items():
            e = r["error_ms"]
            rows.append([name, r["api"], str(r["events"]), f"{e['p50']:.2f} ms", f"{e['p95']:.2f} ms", f"{e['max']:.2f} ms"])
        parts.append(
            "### Replay timing at 1x: |delivered − scheduled| per event (bench/replay_timing.py)\n\n"
            + table(["recording", "api", "events", "p50", "p95", "max"], rows)
        )
    memory = results.get("memory")
    if memory:
        rows = []
        local = memory.get("in_process")
        if local:
            rows.append(
                ["in-process replay session: Python heap", kib(local["idle_heap_bytes"]), kib(local["streaming_heap_bytes"])]
            )
            rows.append(["in-process replay session: RSS", kib(local["idle_rss_bytes"]), kib(local["streaming_rss_bytes"])])
        app = (results.get("concurrency") or {}).get("through_app")
        if app:
            rows.append(
                [
                    "app process RSS per API session",
                    kib(app["idle_rss_bytes_per_session"]),
                    kib(app["streaming_rss_bytes_per_session"]),
                ]
            )
        parts.append("### Memory per session\n\n" + table(["", "idle", "streaming"], rows))
        start = memory.get("startup")
        if start:
            rows = [
                [name, sec(start[name]["median_s"], 1), ", ".join(f"{t:.1f}" for t in start[name]["all_s"])]
                for name in start
                if name != "ratio"
            ]
            rows.append(["ratio", f"{start['ratio']:.2f}x", ""])
            parts.append("### Start-up: spawn → first page served\n\n" + table(["", "median", "runs (s)"], rows))
    checks = results.get("verdicts") or verdicts(results)
    if checks:
        rows = [[c["verdict"], c["target"], c["result"], c["goal"]] for c in checks]
        parts.append("### Targets\n\n" + table(["", "target", "result", "goal"], rows))
    return "\n\n".join(parts)


def into_doc(path: Path, rendered: str) -> None:
    """Replace what lies between the doc's bench markers with ``rendered``."""
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"{path}: no {BEGIN} … {END} markers")
    path.write_text(f"{head}{BEGIN}\n{rendered}\n{END}{tail}", encoding="utf-8")
