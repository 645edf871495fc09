"""The benchmark harness works: its fake server scripts and clocks what the browser
measurements rely on, the in-process sections run on tiny sizes, and the verdicts
follow the targets. No timing is asserted here: figures belong to `bench/run.py`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx

from bench import report, run
from bench.fake import BenchFake, bench_message, marks, reply_deltas, script_for, serve
from streamchat.testing import synth


def test_the_long_reply_is_4000_deltas_of_20000_characters_between_two_marks() -> None:
    deltas = reply_deltas(4000, 5, rid="42")
    assert len(deltas) == 4000 and len("".join(deltas)) == 20_000
    assert (deltas[0], deltas[-1]) == marks("42")
    script = script_for("chat", {"id": "42", "n": "4000", "rate": "100"}, {"stream_options": {"include_usage": True}})
    delta_times = [t for t, raw in script.events if synth._is_delta(raw)]
    assert len(delta_times) == 4000 and math.isclose(delta_times[-1], 39.99, abs_tol=1e-6)
    # A chat stream carries usage only when asked (the llm_openai demo would choke on it).
    bare = script_for("chat", {"id": "1", "n": "3"}, {})
    assert all(raw.data == "[DONE]" or raw.data["choices"] for _, raw in bare.events)


def test_the_fake_server_stamps_the_first_delta_and_a_client_leaving_mid_silence() -> None:
    fake = BenchFake(speed=1.0)
    server = serve(fake)
    try:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": bench_message(7, n=20, stall=30)}]}
        with (
            httpx.Client(timeout=10) as client,
            client.stream("POST", f"{server.url}/chat/completions", json=body) as response,
        ):
            for chunk in response.iter_text():
                if marks("7")[0] in chunk:
                    break
        stamps = fake.stamp("7")
        for _ in range(200):  # the server notices on its own loop
            if stamps.disconnected is not None:
                break
            httpx.get(f"{server.url}/models")  # a cheap round trip instead of a sleep
        assert stamps.first_delta is not None and stamps.disconnected is not None
        assert stamps.disconnected >= stamps.first_delta and stamps.last_delta is None
    finally:
        server.stop()


def test_quick_run_of_the_in_process_sections_writes_json_and_verdicts(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    printed: list[str] = []
    run.main(["--quick", "--only", "pipeline,plugin,fidelity", "--out", str(out)], emit=printed.append)
    data = json.loads(out.read_text())
    rows = data["pipeline"]["apis"]
    assert set(rows) == {"responses", "assistants", "chat"}
    assert all(r["ui_states"] >= 1 and r["events_per_s"] > 0 for api in rows.values() for r in api["rows"].values())
    assert data["fidelity"]["recordings"]["paced-100-per-s"]["events"] > 0
    plugin = data["plugin"]
    assert plugin["runs"] >= 1 and plugin["chunks"] == plugin["events"] - 1  # every chunk but [DONE] reached the SDK
    # The floor without HTTP parses the very chunks the client got.
    assert plugin["sdk_parse_only"]["chunks"] == plugin["chunks"] and plugin["sdk_parse_only"]["p50_s"] > 0
    assert "no HTTP: its chunks parsed as the SDK does" in printed[0]
    assert [v["target"] for v in data["verdicts"]] == [
        "(4) pipeline throughput",
        "(4) linear growth",
        f"(16) {plugin['events']} events through the pytest plugin's client",
        "(6) replay timing",
    ]
    assert all(v["verdict"] in ("PASS", "MISS") for v in data["verdicts"])
    assert "### Targets" in printed[0]


def _browser(
    app_wall: float, peer_wall: float | None, lag: float, first: tuple[float, float], stop_s: float | None
) -> dict[str, Any]:
    stop = {"stop_button": True, "runs": 1, "closed": 1 if stop_s is not None else 0, "max_s": stop_s, "p50_s": stop_s}
    app = {
        "fast": {"wall_s": app_wall},
        "paced": {"lag_end_s": lag},
        "first_token": {"p50_s": first[0], "p95_s": first[0]},
        "stop_silent": stop,
        "stop_streaming": stop,
    }
    peer_fast = {"wall_s": peer_wall} if peer_wall is not None else {"wall_s": None, "wall_s_at_least": 180.0}
    peer = {"fast": peer_fast, "first_token": {"p50_s": first[1], "p95_s": first[1]}}
    return {"app/responses": app, "app/chat": app, "gr.load_chat": peer}


def test_verdicts_follow_the_targets() -> None:
    good = {v["target"]: v["verdict"] for v in report.verdicts({"browser": _browser(0.5, 60.0, 0.05, (0.02, 0.03), 0.02)})}
    assert good == {
        "(1) long reply fully shown": "PASS",
        "(1) lag at 100 deltas/s": "PASS",
        "(2) first token": "PASS",
        "(3) Stop closes the upstream": "PASS",
    }
    bad = {v["target"]: v["verdict"] for v in report.verdicts({"browser": _browser(7.0, 60.0, 0.25, (0.04, 0.03), None)})}
    assert set(bad.values()) == {"MISS"}
    # A peer that timed out still bounds the ratio from below.
    bound = report.verdicts({"browser": _browser(10.0, None, 0.05, (0.02, 0.03), 0.02)})
    assert bound[0]["verdict"] == "PASS" and "lower bound" in bound[0]["result"]
    table = report.render({"browser": _browser(0.5, 60.0, 0.05, (0.02, 0.03), 0.02)})
    assert "| PASS | (1) long reply fully shown |" in table


def test_the_crowd_table_says_how_many_visitors_the_per_call_cost_allows() -> None:
    row = {
        "sessions": 100,
        "ramp_s": 0.0,
        "load_before": (0.5, 0.5, 0.5),
        "p50": 1.1,
        "p95": 1.15,
        "max": 1.2,
        "updates_per_call_p50": 90,
        "app_cpu_share": 0.9,
        "client_cpu_share": 0.2,
    }
    crowd = {
        "recorded_s": 5.0,
        "deltas": 150,
        "limit": 1000,
        "crowds": [row],
        "per_call": {"calls": 100, "app_cpu_s": 0.02, "bare_cpu_s": 0.01},
    }
    text = report.render({"crowd": crowd})
    # Within 1.2x of 5 s, one core does 6 s of work: 300 visitors at 20 ms, 600 at 10 ms.
    assert "at most about 300 visitors at this app's cost, 600 at Gradio's own" in text
    assert "| 100 | 0 s | 0.5 | 1.100 | 1.150 | 1.200 | 90 |" in text and "| 90 % | 20 % |" in text
