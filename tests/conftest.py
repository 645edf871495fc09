"""Shared fixtures: a fake OpenAI server on 127.0.0.1 (real HTTP, real SSE bytes, the
real `openai` client), and sessions pointed at it."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from streamchat.config import parse_config
from streamchat.replayapi import Script, TurnRequest
from streamchat.serve import RunningServer, serve_in_thread
from streamchat.session import ChatSession, Runtime, Settings
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript, FaultyAPI
from streamchat.transcript import Transcript

# The project's own pytest plugin, from this checkout (pyproject's `-p no:streamchat` keeps
# an installed copy's entry point from registering it twice).
pytest_plugins = ["streamchat.pytest_plugin"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run one at a time, on one worker (``--dist loadgroup``): each starts
    the app and Chromium, and two at once on a 2-core machine miss their waits."""
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.xdist_group("browser"))


TEST_KEY = "sk-test-0000000000000000000000"

BASE_CONFIG = """
name: Test assistant
instructions: Be brief.
model: test-model
backend: responses
"""

BUILDERS: dict[str, Callable[..., Any]] = {
    "responses": synth.responses_stream,
    "assistants": synth.assistants_stream,
    "chat": synth.chat_stream,
}


def text_script(api: str, text: str, size: int = 3, **kw: Any) -> FaultScript:
    """A stream in ``api``'s wire format that answers ``text`` in deltas of ``size`` characters."""
    return FaultScript(events=synth.timed(BUILDERS[api](synth.split_text(text, size), **kw), step=0))


class Fake:
    """The fake server and what it will answer.

    ``push`` queues scripts for the next streaming requests, in order; with the queue
    empty, ``responder`` (by default an echo of the user's message) decides.
    """

    def __init__(self) -> None:
        self.queue: collections.deque[Script] = collections.deque()
        self.responder: Callable[[TurnRequest], Script] = lambda req: text_script(req.api, f"Echo: {req.user}")
        self.requests_seen: list[TurnRequest] = []
        self.core = FaultyAPI(self._source, api_key=TEST_KEY)
        self.server: RunningServer | None = None

    def _source(self, req: TurnRequest) -> Script:
        self.requests_seen.append(req)
        if self.queue:
            return self.queue.popleft()
        return self.responder(req)

    def push(self, *scripts: Script) -> None:
        self.queue.extend(scripts)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url


@pytest.fixture(scope="session")
def _server_pair() -> Iterator[tuple[Fake, RunningServer]]:
    fake = Fake()
    server = serve_in_thread(fake.core)
    fake.server = server
    yield fake, server
    server.stop()


@pytest.fixture
def fake(_server_pair: tuple[Fake, RunningServer]) -> Fake:
    """The session's fake server, reset for each test (one uvicorn for the whole run)."""
    fake, _ = _server_pair
    fake.queue.clear()
    fake.responder = lambda req: text_script(req.api, f"Echo: {req.user}")
    fake.requests_seen.clear()
    fake.core.log.clear()
    fake.core.objects.clear()
    fake.core.contexts.clear()
    fake.core.files.files.clear()
    fake.core.files.stores.clear()
    fake.core.files.containers.clear()
    fake.core.speed = 0.0
    fake.core.api_key = TEST_KEY
    return fake


def make_settings(api: str = "responses", *, url: str = "", config: str = BASE_CONFIG, **kw: Any) -> Settings:
    cfg = parse_config(config).with_overrides(backend=api)
    defaults: dict[str, Any] = {
        "config": cfg,
        "mode": "live",
        "api_key": TEST_KEY,
        "base_url": url,
        "coalesce": 0.0,
        "max_retries": 0,
        "read_timeout": 5.0,
    }
    defaults.update(kw)
    return Settings(**defaults)


@pytest.fixture
def live_runtime(fake: Fake) -> Callable[..., Runtime]:
    """Build a live ``Runtime`` that talks to the fake server."""

    def build(api: str = "responses", **kw: Any) -> Runtime:
        return Runtime(make_settings(api, url=fake.url, **kw))

    return build


def replay_settings(path: Path, **kw: Any) -> Settings:
    base = make_settings("responses", mode="replay", api_key=None, replay_path=path, speed=0.0)
    return replace(base, **kw)


async def run_turn(session: ChatSession, message: str, history: list[dict[str, Any]] | None = None) -> list[Any]:
    """Every value the chat function yields for one turn."""
    return [value async for value in session.turn(message, history or [])]


async def turn_transcript(session: ChatSession, message: str, history: list[dict[str, Any]] | None = None) -> Transcript:
    transcript = Transcript()
    async for _ in session.turn_events(message, history or [], transcript):
        pass
    return transcript
