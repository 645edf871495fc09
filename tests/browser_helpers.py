"""Shared by the browser and terminal tests: the app started as a subprocess on a free
loopback port, Debian's chromium driven by pip's playwright, and recordings made for
them with ``streamchat.synth`` (long enough, and paced, to watch them stream)."""

from __future__ import annotations

import importlib.util
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from streamchat.testing import synth

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
START_TIMEOUT = 60.0


def require_browser() -> None:
    """Skip without chromium or playwright, unless CI says the browser is required."""
    required = os.environ.get("STREAMCHAT_REQUIRE_BROWSER") == "1"
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("playwright (pip install playwright)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if required:
            pytest.fail(message + "; STREAMCHAT_REQUIRE_BROWSER=1 makes this an error")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for ``python app.py``: no key and no STREAMCHAT_* setting
    inherited from the caller, so a test says everything the app sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "STREAMCHAT_", "GRADIO_", "SPACE_"))}
    env.update({"GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost"})
    env.update(extra)
    return env


class AppProcess:
    """``python app.py`` serving on 127.0.0.1; its output is kept for failure messages."""

    def __init__(self, env: Mapping[str, str], port: int | None = None) -> None:
        self.port = port or free_port()  # a restart keeps its port (the browser's storage is per origin)
        self.url = f"http://127.0.0.1:{self.port}"
        full = app_env({**env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port)})
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=ROOT,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._ready: queue.Queue[bool] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Running on local URL" in line:
                self._ready.put(True)
        self._ready.put(False)

    def wait_ready(self) -> None:
        try:
            ok = self._ready.get(timeout=START_TIMEOUT)
        except queue.Empty:
            ok = False
        if not ok:
            self.stop()
            raise RuntimeError("the app did not start:\n" + "".join(self.lines))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        AppProcess.stop_all(self)

    @staticmethod
    def stop_all(*apps: AppProcess) -> None:
        """Stop them all at once (nothing is asserted on their way out)."""
        for app in apps:
            if app.proc.poll() is None:
                app.proc.terminate()
        for app in apps:
            try:
                app.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                app.proc.kill()
                app.proc.wait()


# -- recordings made for the UI tests ------------------------------------------------

LONG_ANSWER = """## Streaming, step by step

Each event is **small**, and the bubble grows as they arrive:

1. The client sends `stream: true`.
2. The server keeps the response open.

```python
def read_events(lines):
    for line in lines:
        if line.startswith("data: "):
            yield line[6:]
```

That loop is all a reader needs. The rest of this answer is here to make it long enough to watch: \
server-sent events are plain text over HTTP, one field per line and a blank line between events, \
which is why a browser or a terminal can show each delta the moment it arrives. The end.
"""

SECOND_ANSWER = "Once more, from the top.\n\n" + LONG_ANSWER
LONG_PROMPT = "Stream a long answer."
TOOL_PROMPT = "What is the weather in Paris?"
TOOL_ANSWER = "It is 18 °C and sunny in Paris today."
TURN_PROMPT = "Which turn is this?"
PER_DELTA = 0.03
"""Seconds between deltas at speed 1: LONG_ANSWER (~110 deltas) takes about 3.5 s."""


Turn = synth.SynthTurn


def recording_lines(api: str, title: str, turns: list[Turn]) -> list[dict[str, Any]]:
    """A whole recording as JSON objects (see docs/recording-format.md)."""
    return synth.recording_lines(api, turns, title=title)


def _text_turn(user: str, answer: str, seed: int, size: int = 6) -> Turn:
    events = synth.responses_stream(synth.split_text(answer, size))
    return Turn(user, [synth.paced(events, first_token=0.2, per_delta=PER_DELTA, seed=seed)])


def write_ui_recordings(folder: Path) -> dict[str, Path]:
    """Three recordings (listed in this order): a long Markdown answer asked twice, a
    tool call whose output takes a second, and one prompt asked twice whose answer
    says which turn it is."""
    folder.mkdir(parents=True, exist_ok=True)
    call = synth.FunctionCall("get_weather", '{"city": "Paris", "unit": "c"}', call_id="call_weather", chunks=4)
    first = synth.paced(synth.responses_stream(calls=[call]), first_token=0.2, per_delta=0.1, seed=1)
    tool_done = first[-1][0] + 0.05
    second = synth.paced(
        synth.responses_stream(synth.split_text(TOOL_ANSWER, 4)), start=tool_done + 1.2, first_token=0.1, per_delta=0.05, seed=2
    )
    files = {
        "a-long-stream": recording_lines(
            "responses",
            "A long Markdown answer",
            [_text_turn(LONG_PROMPT, LONG_ANSWER, 3), _text_turn(LONG_PROMPT, SECOND_ANSWER, 4)],
        ),
        "b-tool-call": recording_lines(
            "responses",
            "A tool call",
            [Turn(TOOL_PROMPT, [first, second], tool_outputs=[("call_weather", '{"temp_c": 18, "sky": "sunny"}', tool_done)])],
        ),
        "c-which-turn": recording_lines(
            "responses",
            "The same prompt twice",
            [
                _text_turn(TURN_PROMPT, "This is the first turn.", 5),
                _text_turn(TURN_PROMPT, "This is the second turn.", 6),
            ],
        ),
    }
    out = {}
    for name, objs in files.items():
        path = folder / f"{name}.jsonl"
        path.write_text(synth.dump_lines(objs), encoding="utf-8")
        out[name] = path
    return out
