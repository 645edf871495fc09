"""A chat session's replay wiring: the recording it plays, the ``Player`` that answers
from it, the in-process ``ReplayAPI`` the real `openai` client talks to, and the backend
on that client.

Replay happens at the HTTP boundary (docs/architecture.md), so all a session needs from
here is a backend like the live one, the answer for a message no recorded turn answers,
and the recorded tool outputs: the driver, adapter, transcript and UI are the live ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import httpx2
import openai

from . import events as ev
from .backends import BACKENDS, Backend
from .backends.base import ToolCall, ToolRunner
from .config import Config
from .events import StreamEvent
from .replay import Library, Player
from .replayapi import ReplayAPI
from .serve import ReplayTransport


def replay_client(core: ReplayAPI) -> openai.AsyncOpenAI:
    """A real `openai` client whose requests the fake API answers in-process."""
    http = httpx2.AsyncClient(transport=ReplayTransport(core))
    return openai.AsyncOpenAI(api_key="replay", base_url="http://replay.invalid/v1", http_client=http, max_retries=0)


class Playback:
    """One session's replay of one recording (``name``), built on first use."""

    def __init__(self, library: Library, name: str | None, config: Config, *, speed: float, max_gap: float) -> None:
        self.library = library
        self.name = name
        self.config = config
        self.speed = speed
        self.max_gap = max_gap
        self.clock: Callable[[], float] = time.monotonic
        """The replay's pace keeper (demo mode's Pause stops it, holding the stream)."""
        self.player: Player | None = None
        self.core: ReplayAPI | None = None
        """The in-process API serving this session's replay (its request log is the tests')."""
        self._backend: Backend | None = None

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def backend(self) -> Backend:
        if self._backend is None:
            if self.name is None:
                raise RuntimeError("no recording to replay")
            recording = self.library.load(self.name)
            self.player = Player(recording, max_gap=self.max_gap)
            self.core = ReplayAPI(self.player, speed=self.speed, clock=self.clock)
            config = replace(self.config, model=recording.header.get("model") or self.config.model)
            self._backend = BACKENDS[recording.api](replay_client(self.core), config)
        return self._backend

    def loaded_player(self) -> Player:
        self.backend()
        assert self.player is not None
        return self.player

    def unload(self, name: str | None = None, speed: float | None = None) -> None:
        """Start over (new chat), on another recording or at another speed if given."""
        if name is not None:
            self.name = name
        if speed is not None:
            self.speed = speed
        self._backend = self.player = self.core = None

    def set_speed(self, speed: float) -> None:
        """Applies at once, mid-answer too (the API paces each event at the current speed)."""
        self.speed = max(0.0, speed)
        if self.core is not None:
            self.core.speed = self.speed

    def set_clock(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        if self.core is not None:
            self.core.clock = clock

    def follow(self, parent: int | None) -> None:
        """The recorded turn the chat now shows the answer of: replay follows that branch."""
        if self.name is not None:
            self.loaded_player().following = parent

    def answer_locally(self, message: str, position: int) -> StreamEvent | None:
        """The reply for a message no recorded turn answers: never someone else's answer."""
        if self.name is None:
            return ev.notice("There is no recording to replay, and no OPENAI_API_KEY is set.")
        player = self.loaded_player()
        if player.match(message, position) is None:
            return ev.text(player.unmatched_text(message))
        return None

    def tool_runner(self, message: str, position: int) -> ToolRunner:
        """Recorded tool outputs: replay never runs a handler again."""
        player = self.loaded_player()

        async def recorded(call: ToolCall) -> str:
            return player.tool_output(message, position, call)

        return recorded
