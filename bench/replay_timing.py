"""How punctual is a 1x replay? Replays a bundled recording through the in-process path
(ReplayAPI + ReplayTransport + the real `openai` client and backend) and measures,
for every event, when the client decoded its bytes against when it was scheduled
(turn start + capped offset / speed).

    python -m bench.replay_timing [RECORDING] [--speed X]

Prints p50/p95/max timing error in ms and writes bench/results/replay_timing.json.
Target: p95 under 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from streamchat.backends import BACKENDS
from streamchat.backends.base import Conversation, ToolCall, TurnContext
from streamchat.config import load_config
from streamchat.playback import replay_client
from streamchat.recording import load_recording
from streamchat.replay import Player
from streamchat.replayapi import ReplayAPI, Script, TurnRequest
from streamchat.sse import RawEvent

ROOT = Path(__file__).resolve().parent.parent

DEFAULT = ROOT / "recordings" / "04-markdown-long.jsonl"
RESULTS = ROOT / "bench" / "results" / "replay_timing.json"
TARGET_P95_MS = 10.0


class Clock:
    """The fake API's clock; remembers its last reading, which is the turn's start
    when the stream source is asked for the turn's first stream."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self) -> float:
        self.last = time.monotonic()
        return self.last


class Timed:
    """Stream source and tap at once: notes each stream's schedule as it is served,
    and each event's arrival as the client decodes it."""

    def __init__(self, player: Player, clock: Clock) -> None:
        self.player = player
        self.clock = clock
        self.start = 0.0
        self.scheduled: list[list[float]] = []
        self.arrived: list[list[tuple[float, RawEvent]]] = []

    def __call__(self, request: TurnRequest) -> Script:
        if request.stream == 0:
            self.start = self.clock.last
            self.scheduled, self.arrived = [], []
        script = self.player(request)
        self.scheduled.append([t for t, _ in script.events])
        return script

    def stream_started(self) -> None:
        self.arrived.append([])

    def event(self, raw: RawEvent) -> None:
        self.arrived[-1].append((time.monotonic(), raw))

    def tool_output(self, call_id: str, output: str) -> None:
        pass

    def output_file(self, file_id: str, name: str, data: bytes) -> None:
        pass


async def replay(path: Path, speed: float) -> dict[str, Any]:
    recording = load_recording(path)
    player = Player(recording)
    clock = Clock()
    timed = Timed(player, clock)
    core = ReplayAPI(timed, speed=speed, clock=clock)
    config = replace(load_config(ROOT / "assistant_config.yaml"), model=recording.header.get("model") or "m")
    backend = BACKENDS[recording.api](replay_client(core), config)
    errors_ms: list[float] = []
    scheduled_count = 0
    conv = Conversation()
    history: list[dict[str, Any]] = []
    for turn in recording.turns:

        async def recorded(call: ToolCall, turn_user: str = turn.user, position: int = turn.index) -> str:
            return player.tool_output(turn_user, position, call)

        ctx = TurnContext(tap=timed, run_tool=recorded)
        async for _ in backend.turn(conv, turn.user, history, ctx):
            pass
        scheduled_count += sum(len(s) for s in timed.scheduled)
        for scheduled, arrived in zip(timed.scheduled, timed.arrived, strict=False):
            for t, (when, _) in zip(scheduled, arrived, strict=False):
                errors_ms.append((when - (timed.start + t / speed)) * 1000)
        history.append({"role": "user", "content": turn.user})
    await backend.end_session(conv)
    await backend.client.close()
    errors_ms.sort()
    absolute = sorted(abs(e) for e in errors_ms)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    return {
        "recording": path.name,
        "api": recording.api,
        "speed": speed,
        "events": len(errors_ms),
        "events_scheduled": scheduled_count,
        "duration_s": round(sum(t.duration for t in recording.turns), 3),
        "error_ms": {
            "p50": round(pct(absolute, 0.50), 3),
            "p95": round(pct(absolute, 0.95), 3),
            "max": round(absolute[-1], 3),
            "mean_signed": round(statistics.fmean(errors_ms), 3),
            "min_signed": round(errors_ms[0], 3),
        },
        "target_p95_ms": TARGET_P95_MS,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Timing error of a replay through the in-process path.")
    parser.add_argument("recording", nargs="?", type=Path, default=DEFAULT, help="a recording file (default: 04-markdown-long)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (default 1; must be > 0)")
    args = parser.parse_args()
    if args.speed <= 0:
        parser.error("--speed must be > 0: speed 0 has no schedule to measure against")
    result = asyncio.run(replay(args.recording, args.speed))
    err = result["error_ms"]
    verdict = "within" if err["p95"] < TARGET_P95_MS else "OVER"
    print(
        f"{result['recording']} ({result['api']}, {result['events']} events, {result['duration_s']} s recorded) at {args.speed:g}x: "
        f"timing error p50 {err['p50']:.2f} ms, p95 {err['p95']:.2f} ms, max {err['max']:.2f} ms "
        f"({verdict} the {TARGET_P95_MS:g} ms p95 target)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
