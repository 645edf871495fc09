"""One user turn, end to end: source (live client or replay) → recorder tap → adapter →
transcript → coalesced UI values; and the per-session state that outlives a turn.

No Gradio here: the UI and the CLI both drive ``ChatSession.turn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai

from . import events as ev
from .backends import BACKENDS, Backend, Conversation, TurnContext
from .backends.base import NullTap, ToolCall, describe_error, redact
from .coalesce import Coalescer, Pace, gauge_for
from .config import Config
from .defaults import READ_TIMEOUT
from .events import StreamEvent
from .guard import Limit
from .recording import MAX_FOLDER_BYTES, RecordingWriter, header, new_recording_path
from .replay import MAX_GAP, Library, Player
from .replayapi import ReplayAPI
from .serve import ReplayTransport
from .tools import LocalTools
from .transcript import Transcript

log = logging.getLogger("streamchat")

COALESCE_SECONDS = 0.05
"""UI updates are sent at most this often (and always the last one); less often while
the event loop lags (``coalesce.py``)."""

Mode = Literal["live", "replay"]


@dataclass(frozen=True)
class Settings:
    """How the app runs: from flags and environment (see ``app.py --help``)."""

    config: Config
    mode: Mode
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    record_dir: Path | None = None
    replay_path: Path | None = None
    speed: float = 1.0
    max_gap: float = MAX_GAP
    coalesce: float = COALESCE_SECONDS
    read_timeout: float = READ_TIMEOUT
    max_retries: int = 2
    max_output_tokens: int | None = None
    """Sent on every provider request, in each API's own parameter (see backends/base.py)."""
    rate_limits: tuple[Limit, ...] = ()
    daily_requests: int | None = None
    allowed_users: frozenset[str] = frozenset()
    allowed_orgs: frozenset[str] = frozenset()
    """Per-visitor limits, the app's daily cap and the allow-list (guard.py; the UI applies them)."""


def make_client(settings: Settings) -> openai.AsyncOpenAI:
    timeout = httpx2.Timeout(connect=10.0, read=settings.read_timeout, write=30.0, pool=30.0)
    kwargs: dict[str, Any] = {"api_key": settings.api_key, "timeout": timeout, "max_retries": settings.max_retries}
    if settings.base_url:
        kwargs["base_url"] = settings.base_url
    return openai.AsyncOpenAI(**kwargs)


def replay_client(core: ReplayAPI) -> openai.AsyncOpenAI:
    """A real `openai` client whose requests the fake API answers in-process."""
    http = httpx2.AsyncClient(transport=ReplayTransport(core))
    return openai.AsyncOpenAI(api_key="replay", base_url="http://replay.invalid/v1", http_client=http, max_retries=0)


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(p.stat().st_size for p in folder.glob("*.jsonl") if p.is_file())
    except OSError:
        return 0


class Runtime:
    """What the whole app shares: settings, the live client and backend, the library."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.config
        self.library: Library | None = None
        self.recordings: list[str] = []
        self.client: openai.AsyncOpenAI | None = None
        self.backend: Backend | None = None
        self.sessions: dict[str, ChatSession] = {}
        """Sessions by Gradio session hash, so a closed tab can end its own."""
        self._background: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop sessions run on (Gradio's), for cleanup called from other threads."""
        self.record_lock: contextlib.AbstractContextManager[Any] | None = None
        """Held by recorders around each write (a dataset uploader's lock; see spaces.py)."""
        if settings.mode == "replay":
            assert settings.replay_path is not None
            self.library = Library(settings.replay_path)
            self.recordings = self.library.playable()
            for problem in self.library.problems:
                log.warning("replay: %s", problem)
            for name in self.recordings:  # damaged lines, skipped: said once, by number
                for problem in self.library.load(name).problems:
                    log.warning("replay: %s: %s", name, problem)
        else:
            self.client = make_client(settings)
            self.backend = BACKENDS[self.config.backend](self.client, self.config)

    def check(self) -> None:
        """Fail at start-up, not mid-chat: tool handlers import, schemas are valid."""
        LocalTools(self.config.tools).check()

    @property
    def live(self) -> bool:
        return self.settings.mode == "live"

    def new_session(self, recording: str | None = None) -> ChatSession:
        return ChatSession(self, recording or (self.recordings[0] if self.recordings else None))

    def background(self, coro: Any) -> None:
        """Run cleanup without blocking the caller (a cancelled turn, a closed tab)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def discard(self, session: ChatSession) -> None:
        """End a session from any thread (Gradio calls state deletion from its own)."""
        for key, value in list(self.sessions.items()):
            if value is session:
                del self.sessions[key]
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.background(session.close())
        else:
            asyncio.run_coroutine_threadsafe(session.close(), loop)

    async def start(self) -> None:
        if self.backend is not None:
            await self.backend.start()

    def run_outside(self, action: str) -> None:
        """Run ``start`` or ``shutdown`` before or after Gradio's loop, with a client of
        its own: an async client's connections belong to the loop that opened them."""

        async def go() -> None:
            if self.backend is None:  # replay: nothing remote to create or delete
                if action == "shutdown":
                    await self.shutdown()
                return
            shared, self.backend.client = self.backend.client, make_client(self.settings)
            try:
                await (self.start() if action == "start" else self.shutdown())
            finally:
                await self.backend.client.close()
                self.backend.client = shared

        asyncio.run(go())

    async def shutdown(self) -> None:
        # Pending run cancels first (closing a session forgets its ids); only this loop's:
        # after Gradio's loop has stopped, its tasks can no longer be awaited.
        loop = asyncio.get_running_loop()
        pending = [task for task in self._background if task.get_loop() is loop]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await session.close()
        if self.backend is not None:
            with contextlib.suppress(Exception):
                await self.backend.close()


class ChatSession:
    """One browser tab (or CLI run): its remote thread/conversation, recorder, replay."""

    def __init__(self, runtime: Runtime, recording: str | None = None) -> None:
        self.runtime = runtime
        self.conv = Conversation()
        self.recorder: RecordingWriter | None = None
        self.recording_name = recording
        self.speed = runtime.settings.speed
        self.player: Player | None = None
        self._replay_backend: Backend | None = None
        self._core: ReplayAPI | None = None
        self.tools = LocalTools(runtime.config.tools)
        self.record = True
        """This session's record toggle (UI): off pauses its recording; needs ``record_dir``."""
        self.last_status: str | None = None

    # -- setup ----------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        if self.runtime.live:
            assert self.runtime.backend is not None
            return self.runtime.backend
        if self._replay_backend is None:
            self._replay_backend = self._make_replay_backend()
        return self._replay_backend

    def _make_replay_backend(self) -> Backend:
        library = self.runtime.library
        if library is None or self.recording_name is None:
            raise RuntimeError("no recording to replay")
        recording = library.load(self.recording_name)
        self.player = Player(recording, max_gap=self.runtime.settings.max_gap)
        core = self._core = ReplayAPI(self.player, speed=self.speed)
        config = replace(self.runtime.config, model=recording.header.get("model") or self.runtime.config.model)
        return BACKENDS[recording.api](replay_client(core), config)

    def _recorder(self) -> RecordingWriter | None:
        folder = self.runtime.settings.record_dir
        if folder is None or not self.runtime.live or not self.record:
            return None
        if self.recorder is None:
            config = self.runtime.config
            head = header(config.backend, config.model, config.sha256)
            self.recorder = RecordingWriter(
                new_recording_path(folder, config.backend),
                head,
                secret=self.runtime.settings.api_key,
                lock=self.runtime.record_lock,
            )
            if _folder_bytes(folder) > MAX_FOLDER_BYTES:  # stopped before its file exists: said, not silent
                limit = f"{MAX_FOLDER_BYTES / (1024 * 1024):g} MiB"
                self.recorder.stopped = f"The recordings folder is over its limit of {limit}; this chat is not recorded."
        return self.recorder

    # -- lifecycle ------------------------------------------------------------------

    async def reset(self, recording: str | None = None, speed: float | None = None) -> None:
        """New chat: end the remote thread/conversation, start a new recording file."""
        await self.close()
        if recording is not None:
            self.recording_name = recording
        if speed is not None:
            self.speed = speed
        self._replay_backend = None
        self.player = None

    def set_speed(self, speed: float) -> None:
        self.speed = max(0.0, speed)
        if self._core is not None:
            self._core.speed = self.speed

    async def close(self) -> None:
        conv, self.conv = self.conv, Conversation()
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        try:
            if self.runtime.live or self._replay_backend is not None:
                await self.backend.end_session(conv)
        except Exception as exc:  # cleanup must not break the next chat
            log.warning("could not delete the session's remote state: %s", redact(str(exc), self.runtime.settings.api_key))

    # -- one turn -------------------------------------------------------------------

    async def turn(
        self, message: str, history: list[dict[str, Any]], stop: asyncio.Event | None = None
    ) -> AsyncGenerator[str | list[dict[str, Any]], None]:
        """Stream one turn as UI values: at most one per ``coalesce`` seconds, the
        first at once, the last always. Never raises for API trouble: every failure
        ends as a message in the chat.

        Setting ``stop`` ends the turn from inside: its last value (the partial answer
        and the "⏹ Stopped" line) is yielded like any other, so the caller keeps it.
        Closing this generator instead ends the turn at once, with nothing more yielded.
        """
        transcript = Transcript(clock=time.monotonic)
        updates = self.turn_events(message, history, transcript)
        stopped = asyncio.ensure_future((stop or asyncio.Event()).wait())
        step: asyncio.Future[Any] | None = None
        try:
            while True:
                step = asyncio.ensure_future(anext(updates))
                await asyncio.wait({step, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():  # Stop: the turn's own cleanup marks it as cancelled
                    step.cancel()
                    with contextlib.suppress(BaseException):
                        await step
                    yield transcript.value()
                    return
                try:
                    step.result()
                except StopAsyncIteration:
                    return
                yield transcript.value()
        finally:
            stopped.cancel()
            if step is not None and not step.done():
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
            # The inner generator ends now, not whenever the garbage collector gets to it.
            await updates.aclose()

    async def turn_events(
        self, message: str, history: list[dict[str, Any]], transcript: Transcript
    ) -> AsyncGenerator[None, None]:
        """Feed ``transcript`` and yield whenever the UI should show it (coalesced)."""
        position = sum(1 for m in history if m.get("role") == "user")
        self.last_status = None
        answer = self._answer_locally(message, position)
        if answer is not None:  # nothing to ask the API: say so in the chat
            transcript.handle_event(answer)
            transcript.handle_event(ev.turn_end("completed"))
            self.last_status = "completed"
            yield None
            return
        backend = self.backend
        recorder = self._recorder()
        if recorder is not None:
            recorder.begin_turn(message)
        queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        ctx = TurnContext(tap=recorder or NullTap(), run_tool=self._tool_runner(message, position))
        ctx.max_output_tokens = self.runtime.settings.max_output_tokens
        pump = asyncio.ensure_future(self._pump(backend, message, history, ctx, queue))
        coalescer = Coalescer(queue, transcript.handle_event, Pace(self.runtime.settings.coalesce, gauge_for()))
        try:
            while await coalescer.wait():
                yield None
            if recorder is not None and recorder.stopped:
                transcript.handle_event(ev.notice(recorder.stopped))
                coalescer.dirty = True
            if coalescer.dirty:
                yield None
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump
            if transcript.status is None:
                transcript.handle_event(ev.turn_end("cancelled"))
            self.last_status = transcript.status
            if recorder is not None:
                recorder.end_turn(transcript.status or "cancelled")
            if not coalescer.ended or transcript.status == "interrupted":
                # Stopped, or the stream broke: the remote run may still be going.
                self.runtime.background(self._cancel_remote(backend))

    def _answer_locally(self, message: str, position: int) -> StreamEvent | None:
        """The reply for a message no API should see: an empty one, or (replay) one no
        recorded turn answers — never someone else's answer."""
        if not message.strip():
            return ev.notice("Type a message first.")
        if self.runtime.live:
            return None
        if self.recording_name is None:
            return ev.notice("There is no recording to replay, and no OPENAI_API_KEY is set.")
        player = self._loaded_player()
        if player.match(message, position) is None:
            return ev.text(player.unmatched_text(message))
        return None

    def _loaded_player(self) -> Player:
        if self._replay_backend is None:
            self._replay_backend = self._make_replay_backend()
        assert self.player is not None
        return self.player

    async def _pump(
        self,
        backend: Backend,
        message: str,
        history: list[dict[str, Any]],
        ctx: TurnContext,
        queue: asyncio.Queue[StreamEvent | None],
    ) -> None:
        """Run the backend's turn in its own task, so the UI loop can wait for "next
        event or next tick" without cancelling the stream."""
        has_text = False
        ended = False
        try:
            async for event in backend.turn(self.conv, message, history, ctx):
                has_text = has_text or event.kind == "text"
                if event.kind in ("error", "notice", "turn_end") and event.text:  # servers echo keys
                    event = replace(event, text=redact(event.text, self.runtime.settings.api_key))
                queue.put_nowait(event)
                if event.kind == "turn_end":
                    ended = True
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status, line = describe_error(exc, has_text=has_text)
            line = redact(line, self.runtime.settings.api_key)
            log.info("turn ended by %s: %s", type(exc).__name__, line)
            queue.put_nowait(ev.turn_end(status, line))
            ended = True
        finally:
            if not ended and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                queue.put_nowait(ev.turn_end("interrupted"))
            queue.put_nowait(None)

    def _tool_runner(self, message: str, position: int) -> Any:
        if self.runtime.live:
            return self.tools.run
        player = self.player
        assert player is not None

        async def recorded(call: ToolCall) -> str:
            return player.tool_output(message, position, call)

        return recorded

    async def _cancel_remote(self, backend: Backend) -> None:
        try:
            await asyncio.wait_for(backend.cancel(self.conv), timeout=10)
        except Exception as exc:
            log.info("remote cancel failed: %s", redact(str(exc), self.runtime.settings.api_key))
