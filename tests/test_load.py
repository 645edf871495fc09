"""Load: the real `app.py` demo serves 50 concurrent gradio_client sessions, each with
its own prompts, streamed from the fake server at a live-like pace.

Proves no cross-talk (of text, threads, conversations or history), no deadlock, a
bounded finish, and that every remote thread or conversation a session created is
deleted once its client goes away (the fake server's log and object table show it).
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest
from conftest import BUILDERS, ROOT, TEST_KEY, Fake, make_settings, run_turn
from gradio_client import Client

from streamchat.replayapi import Script, TurnRequest
from streamchat.session import Runtime
from streamchat.testing import synth

SESSIONS = 50
DELTAS = 30
STEP = 0.01
"""Seconds between deltas: the fake server's own pacing (speed 1), not a test sleep."""
DEADLINE = 90.0
"""Every session's two turns must be done this long after they start (about 15 s on two
idle cores; the margin is for a busy machine, not for the app)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answer_for(user: str, position: int) -> str:
    """The one answer that belongs to a prompt at its place in its conversation: every
    delta names both, so a delta from anyone else's stream shows."""
    return "".join(f"<{user}@{position}:{k}> " for k in range(DELTAS))


def paced_responder(api: str) -> Any:
    def answer(req: TurnRequest) -> Script:
        deltas = [f"<{req.user}@{req.position}:{k}> " for k in range(DELTAS)]
        return Script(events=synth.timed(BUILDERS[api](deltas), step=STEP))

    return answer


def load_app(name: str) -> ModuleType:
    """Import app.py afresh under its own module name (its `demo` is built at import)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def launched_app(fake: Fake, api: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[tuple[ModuleType, str]]:
    """The app as `python app.py` runs it (start, launch, close, shutdown), live against
    the fake server on a free loopback port; yields the module and its URL."""
    for var in ("STREAMCHAT_CONFIG", "STREAMCHAT_MODEL", "STREAMCHAT_RECORD", "STREAMCHAT_REPLAY", "STREAMCHAT_SPEED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    monkeypatch.setenv("STREAMCHAT_BACKEND", api)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    # A closed client is noticed at the next heartbeat: make that soon.
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.5")
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    app = load_app(f"app_under_test_{api}")
    port = free_port()
    app.runtime.run_outside("start")
    try:
        app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield app, f"http://127.0.0.1:{port}/"
        finally:
            app.demo.close()
    finally:
        app.runtime.run_outside("shutdown")


def wait_until(condition: Any, timeout: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (cleanup runs in the
    server's loop, after the client has gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        threading.Event().wait(0.05)
    return bool(condition())


class Session:
    """One simulated browser tab: its own client, two prompts, every value it saw."""

    def __init__(self, url: str, index: int, start: threading.Barrier) -> None:
        self.url = url
        self.index = index
        self.start = start
        self.client: Client | None = None
        self.values: list[list[Any]] = []
        self.finals: list[Any] = []

    def run(self) -> None:
        # httpx's 5 s default is for a quiet server; 50 sessions on two cores need longer.
        self.client = Client(self.url, verbose=False, httpx_kwargs={"timeout": DEADLINE})
        self.start.wait(timeout=DEADLINE)  # every session streams at once
        for prompt in (f"s{self.index}-first", f"s{self.index}-second"):
            job = self.client.submit({"text": prompt}, api_name="/chat")
            # result() blocks; iterating a job would poll every millisecond.
            self.finals.append(job.result(timeout=DEADLINE))
            self.values.append(job.outputs())


def is_waiting_line(value: Any) -> bool:
    """A value that is only the "⏳ Waiting for the server…" line (before a first token)."""
    return isinstance(value, list) and all(str(m.get("metadata", {}).get("title", "")).startswith("⏳") for m in value)


def prompts_in(body: Any) -> set[str]:
    """The session prompts a logged request body carries (its user messages)."""
    return set(re.findall(r"s\d+-(?:first|second)", str(body)))


@pytest.mark.parametrize("api", ["responses", "assistants"])
def test_fifty_concurrent_sessions(api: str, fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.responder = paced_responder(api)
    fake.core.speed = 1.0
    with launched_app(fake, api, monkeypatch) as (app, url):
        start = threading.Barrier(SESSIONS)
        sessions = [Session(url, i, start) for i in range(SESSIONS)]
        began = time.monotonic()
        with ThreadPoolExecutor(SESSIONS) as pool:
            futures = [pool.submit(s.run) for s in sessions]
            for future in futures:
                future.result(timeout=DEADLINE)  # a deadlock fails here, not by hanging
        assert time.monotonic() - began < DEADLINE

        # Each session received exactly its own answers, and every partial value on the
        # way was a prefix of its own answer.
        for s in sessions:
            expected = [answer_for(f"s{s.index}-first", 0), answer_for(f"s{s.index}-second", 1)]
            assert s.finals == expected
            for values, answer in zip(s.values, expected, strict=True):
                assert values and values[-1] == answer
                # A slow first token on two busy cores may show the waiting line first.
                values = [v for v in values if not is_waiting_line(v)]
                assert all(isinstance(v, str) and answer.startswith(v) for v in values)

        # No cross-talk of remote state: one thread/conversation per session, holding
        # that session's prompts only.
        assert len(app.runtime.sessions) == SESSIONS
        by_remote: dict[str, set[str]] = {}
        if api == "responses":
            for request in fake.core.requests("POST", "/responses"):
                by_remote.setdefault(request.body["conversation"], set()).update(prompts_in(request.body["input"]))
            kind = "conversation"
        else:
            for request in fake.core.requests("POST", "/messages"):
                thread = request.path.split("/")[2]
                by_remote.setdefault(thread, set()).update(prompts_in(request.body))
            kind = "thread"
        assert len(by_remote) == SESSIONS
        owners = [{prompt.split("-")[0] for prompt in found} for found in by_remote.values()]
        assert all(len(owner) == 1 for owner in owners)
        assert sorted(owner.pop() for owner in owners) == sorted(f"s{i}" for i in range(SESSIONS))
        assert all(len(found) == 2 for found in by_remote.values())
        assert sorted(fake.core.live_objects(kind)) == sorted(by_remote)

        # Closing the clients ends their sessions: every thread/conversation deleted.
        with ThreadPoolExecutor(SESSIONS) as pool:
            list(pool.map(lambda s: s.client.close(), sessions))
        assert wait_until(lambda: not fake.core.live_objects(kind) and not app.runtime.sessions, timeout=15.0), (
            fake.core.live_objects(kind),
            len(app.runtime.sessions),
        )
        deleted = {r.path.split("/")[2] for r in fake.core.requests("DELETE", f"/{kind}s/")}
        assert deleted == set(by_remote)
    # Shutdown deletes the app's own assistant too: nothing is left on the server.
    assert fake.core.live_objects("assistant") == []
    assert len(fake.core.requests("POST", "/assistants")) == (1 if api == "assistants" else 0)


async def test_concurrent_first_turns_create_one_assistant(fake: Fake) -> None:
    """Without a start-up call (an imported app), many sessions' first turns at once
    must share one assistant, not each create one that shutdown then leaks."""
    runtime = Runtime(make_settings("assistants", url=fake.url))
    sessions = [runtime.new_session() for _ in range(10)]
    finals = await asyncio.gather(*(run_turn(s, f"q{i}") for i, s in enumerate(sessions)))
    assert [f[-1] for f in finals] == [f"Echo: q{i}" for i in range(10)]
    assert len(fake.core.requests("POST", "/assistants")) == 1
    for session in sessions:
        await session.close()
    await runtime.shutdown()
    assert fake.core.live_objects("assistant") == []
    assert fake.core.live_objects("thread") == []
    assert runtime.client is not None
    await runtime.client.close()
