"""One user turn, end to end: source (live client or replay) → recorder tap → adapter →
transcript → coalesced UI values; and the per-session state that outlives a turn.

No Gradio here: the UI and the CLI both drive ``ChatSession.turn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai

from . import events as ev
from .attachments import Attachment
from .backends import BACKENDS, Backend, Conversation, TurnContext
from .backends.base import REQUEST_TAP, WAIT_STATUS, NullTap, RetryingClient, ToolRunner, describe_error, redact
from .backends.history import answered_key, history_key, visible
from .coalesce import Coalescer, Pace, gauge_for
from .config import Config
from .defaults import READ_TIMEOUT
from .events import StreamEvent
from .guard import Limit
from .playback import Playback
from .recording import MAX_FOLDER_BYTES, FolderQuota, RecordedTurn, RecordingWriter, header, new_recording_path
from .redact import REPLACED, EventRedactor, clean_message, clean_text, protect_logs
from .replay import MAX_GAP, Library, Player
from .tools import LocalTools
from .transcript import Transcript

log = logging.getLogger("streamchat")

COALESCE_SECONDS = 0.05
"""UI updates are sent at most this often (and always the last one); less often while
the event loop lags (``coalesce.py``)."""
WAIT_NOTICE = 3.0
"""Seconds of silence before the first token after which the chat says it is waiting."""

Mode = Literal["live", "replay"]


@dataclass(frozen=True)
class Settings:
    """How the app runs: from flags and environment (see ``app.py --help``)."""

    config: Config
    mode: Mode
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    record_dir: Path | None = None
    record_attachments: bool = False
    """Keep the bytes of the user's files in recordings (``--record-attachments``)."""
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
    wait_notice: float = WAIT_NOTICE
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    """How retries wait (tests pass a fake that returns at once)."""
    autoplay: bool = False
    typing: bool = True
    play: bool = False
    """Demo mode (demo_mode.py): play on page load; type prompts or show them at once;
    the terminal chat plays its recording."""


def make_client(settings: Settings) -> openai.AsyncOpenAI:
    timeout = httpx2.Timeout(connect=10.0, read=settings.read_timeout, write=30.0, pool=30.0)
    # Retries are ours, not the SDK's: bounded as a whole and said in the chat.
    http = RetryingClient(retries=settings.max_retries, read_timeout=settings.read_timeout, sleep=settings.sleep, timeout=timeout)
    kwargs: dict[str, Any] = {"api_key": settings.api_key, "timeout": timeout, "max_retries": 0, "http_client": http}
    if settings.base_url:
        kwargs["base_url"] = settings.base_url
    return openai.AsyncOpenAI(**kwargs)


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
        self.folder_quota = FolderQuota(MAX_FOLDER_BYTES)
        """The record folder's bytes, counted by every recorder on every write."""
        protect_logs(settings.api_key)
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

    def open_recorder(self) -> RecordingWriter:
        """A new recording file for a session, in the record folder (its writes count
        toward the folder's cap; over it, the file is never created, and the chat says so)."""
        folder = self.settings.record_dir
        assert folder is not None
        config = self.config
        quota = self.folder_quota
        quota.limit = MAX_FOLDER_BYTES
        recorder = RecordingWriter(
            new_recording_path(folder, config.backend),
            header(config.backend, config.model, config.sha256),
            secret=self.settings.api_key,
            lock=self.record_lock,
            quota=quota,
            record_attachments=self.settings.record_attachments,
        )
        if quota.measure(folder) > MAX_FOLDER_BYTES:
            limit = f"{MAX_FOLDER_BYTES / (1024 * 1024):g} MiB"
            recorder.stopped = f"The recordings folder is over its limit of {limit}; this chat is not recorded."
        return recorder

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


def user_content(message: str, attachments: Sequence[Attachment]) -> Any:
    """The user's message as the page shows it: its files (as Gradio's file parts), then
    its text; plain text when it has no files."""
    if not attachments:
        return message
    parts: list[Any] = [{"type": "file", "file": {"path": str(a.path or a.name), "orig_name": a.name}} for a in attachments]
    return [*parts, {"type": "text", "text": message}] if message else parts


BUSY = "Another answer is still streaming in this chat; send this message when it has finished."


class ChatSession:
    """One browser tab (or CLI run): its remote thread/conversation, recorder, replay."""

    def __init__(self, runtime: Runtime, recording: str | None = None) -> None:
        self.runtime = runtime
        self.conv = Conversation()
        self.recorder: RecordingWriter | None = None
        self.playback: Playback | None = None
        """Replay mode: the recording this session plays and its wiring (None live)."""
        if not runtime.live:
            assert runtime.library is not None
            settings = runtime.settings
            self.playback = Playback(runtime.library, recording, runtime.config, speed=settings.speed, max_gap=settings.max_gap)
        self.tools = LocalTools(runtime.config.tools)
        self.record = True
        """This session's record toggle (UI): off pauses its recording; needs ``record_dir``."""
        self.last_status: str | None = None
        self.replayed: RecordedTurn | None = None
        """Replay: the recorded turn that answered the last message (None: none did, or live)."""
        self._turn_running = False
        self._said_replaced = False
        self.outputs: Path | None = None
        """This session's own folder for files tools produce (``TurnContext.outputs``):
        made at its first turn, private (mode 0700), deleted by ``close`` (and so ``reset``)."""

    # -- setup ----------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        if self.playback is not None:
            return self.playback.backend()
        assert self.runtime.backend is not None
        return self.runtime.backend

    @property
    def recording_name(self) -> str | None:
        return self.playback.name if self.playback is not None else None

    @property
    def speed(self) -> float:
        return self.playback.speed if self.playback is not None else self.runtime.settings.speed

    @property
    def player(self) -> Player | None:
        return self.playback.player if self.playback is not None else None

    def _recorder(self) -> RecordingWriter | None:
        if self.runtime.settings.record_dir is None or not self.runtime.live or not self.record:
            return None
        if self.recorder is None:
            self.recorder = self.runtime.open_recorder()
        return self.recorder

    # -- lifecycle ------------------------------------------------------------------

    async def reset(self, recording: str | None = None, speed: float | None = None) -> None:
        """New chat: end the remote thread/conversation, start a new recording file."""
        await self.close()
        if self.playback is not None:
            self.playback.unload(recording, speed)

    def set_speed(self, speed: float) -> None:
        if self.playback is not None:
            self.playback.set_speed(speed)

    def set_clock(self, clock: Callable[[], float]) -> None:
        """The replay's clock, from now on (demo mode's Pause stops it, holding the stream)."""
        if self.playback is not None:
            self.playback.set_clock(clock)

    def output_folder(self) -> Path:
        if self.outputs is None:
            self.outputs = Path(tempfile.mkdtemp(prefix="streamchat-files-"))
        return self.outputs

    async def close(self) -> None:
        if self.outputs is not None:
            shutil.rmtree(self.outputs, ignore_errors=True)
            self.outputs = None
        conv, self.conv = self.conv, Conversation()
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        try:
            if self.playback is None or self.playback.loaded:
                await self.backend.end_session(conv)
        except Exception as exc:  # cleanup must not break the next chat
            log.warning("could not delete the session's remote state: %s", redact(str(exc), self.runtime.settings.api_key))

    # -- one turn -------------------------------------------------------------------

    async def turn(
        self,
        message: str,
        history: list[dict[str, Any]],
        stop: asyncio.Event | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> AsyncGenerator[str | list[dict[str, Any]], None]:
        """Stream one turn as UI values: at most one per ``coalesce`` seconds, the
        first at once, the last always. Never raises for API trouble: every failure
        ends as a message in the chat.

        Setting ``stop`` ends the turn from inside: its last value (the partial answer
        and the "⏹ Stopped" line) is yielded like any other, so the caller keeps it.
        Closing this generator instead ends the turn at once, with nothing more yielded.

        ``attachments`` are the message's files, already checked (``attachments.inspect``).
        """
        transcript = Transcript(clock=time.monotonic)
        updates = self.turn_events(message, history, transcript, attachments)
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
        self, message: str, history: list[dict[str, Any]], transcript: Transcript, attachments: Sequence[Attachment] = ()
    ) -> AsyncGenerator[None, None]:
        """Feed ``transcript`` and yield whenever the UI should show it (coalesced)."""
        if self._turn_running:  # one turn at a time: two would mix in the recording and the thread
            transcript.handle_event(ev.turn_end("failed", BUSY))
            yield None
            return
        self._turn_running = True
        try:
            async with contextlib.aclosing(self._one_turn(message, history, transcript, tuple(attachments))) as steps:
                async for step in steps:
                    yield step
        finally:
            self._turn_running = False

    async def _one_turn(
        self, message: str, history: list[dict[str, Any]], transcript: Transcript, attachments: tuple[Attachment, ...]
    ) -> AsyncGenerator[None, None]:
        position = sum(1 for m in history if m.get("role") == "user")
        self.last_status = None
        self._said_replaced = False
        if clean_text(message) != message:  # lone surrogates: UTF-8 cannot carry them anywhere
            message = clean_text(message)
            transcript.handle_event(ev.notice(REPLACED))
            self._said_replaced = True
        history = [clean_message(m) for m in history]  # earlier messages too: they are sent again
        conv = self.conv  # a reset during the turn gives the session a new one
        parent = conv.recorded.get(history_key(visible(history)))
        if self.playback is not None:
            self.playback.follow(parent)  # replay follows the branch recorded
        answer = self._answer_locally(message, position, attachments)
        self.replayed = None
        if answer is not None:  # nothing to ask the API: say so in the chat
            transcript.handle_event(answer)
            transcript.handle_event(ev.turn_end("completed"))
            self.last_status = "completed"
            yield None
            return
        backend = self.backend
        recorder = self._recorder()
        if recorder is not None:
            recorder.begin_turn(message, position=position, parent=parent, attachments=attachments or None)
        queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        ctx = TurnContext(
            tap=recorder or NullTap(), run_tool=self._tool_runner(message, position, attachments), attachments=attachments
        )
        ctx.max_output_tokens = self.runtime.settings.max_output_tokens
        ctx.outputs = self.output_folder()
        pump = asyncio.ensure_future(self._pump(backend, message, history, ctx, queue))
        # Live, before the first token, silence gets a status line that the answer
        # replaces (a replay's silences are recorded ones, capped by --max-gap).
        live, notice_after = self.runtime.live, self.runtime.settings.wait_notice
        coalescer = Coalescer(
            queue,
            transcript.handle_event,
            Pace(self.runtime.settings.coalesce, gauge_for()),
            silence=lambda: None if transcript.started or not live else notice_after,
            on_silence=lambda: transcript.handle_event(ev.waiting("Waiting for the server…")),
        )
        try:
            while await coalescer.wait():
                yield None
            if recorder is not None and recorder.stopped:
                transcript.handle_event(ev.notice(recorder.stopped))
                coalescer.dirty = True
            left_out = recorder.take_notice() if recorder is not None else None
            if left_out:  # a file's bytes were not recorded: said once per session
                transcript.handle_event(ev.notice(left_out))
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
            # Which visible history the remote state now holds (only a complete answer).
            asked = user_content(message, attachments)
            shown = answered_key(history, asked, transcript.snapshot()) if transcript.status == "completed" else None
            conv.settle(shown)
            self._note_turn(conv, shown, recorder, message, position, attachments)
            if self.player is not None:
                self.replayed = self.player.match(message, position, attachments=attachments)
            if recorder is not None:
                recorder.end_turn(transcript.status or "cancelled")
            if not coalescer.ended or transcript.status == "interrupted":
                # Stopped, or the stream broke: the remote run may still be going.
                self.runtime.background(self._cancel_remote(backend))

    def _note_turn(
        self,
        conv: Conversation,
        shown: str | None,
        recorder: Any,
        message: str,
        position: int,
        attachments: Sequence[Attachment] = (),
    ) -> None:
        """Remember which recorded turn answered the chat now shown (the next turn's parent)."""
        if shown is None:
            return
        if recorder is not None and not recorder.stopped:
            conv.recorded[shown] = recorder.turn_number
        elif self.player is not None:
            served = self.player.match(message, position, attachments=attachments)
            if served is not None:
                conv.recorded[shown] = served.index

    def _answer_locally(self, message: str, position: int, attachments: tuple[Attachment, ...] = ()) -> StreamEvent | None:
        """The reply for a message no API should see: an empty one, or (replay) one no
        recorded turn answers — never someone else's answer."""
        if not message.strip() and not attachments:
            return ev.notice("Type a message first.")
        refused = self.backend.refuse(attachments) if attachments else None
        if refused is not None:  # files this API cannot take: said before any request
            return ev.error(refused)
        return self.playback.answer_locally(message, position, attachments) if self.playback is not None else None

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
        outgoing = EventRedactor(self.runtime.settings.api_key, said_replaced=self._said_replaced)
        WAIT_STATUS.set(lambda line: queue.put_nowait(ev.waiting(line)))  # this task's context only
        REQUEST_TAP.set(getattr(ctx.tap, "http_request", None))  # the recorder's request lines
        try:
            async for event in backend.turn(self.conv, message, history, ctx):
                has_text = has_text or event.kind == "text"
                for out in outgoing(event):
                    queue.put_nowait(out)
                if event.kind == "turn_end":
                    ended = True
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status, line = describe_error(exc, has_text=has_text)
            line = redact(line, self.runtime.settings.api_key)
            log.info("turn ended by %s: %s", type(exc).__name__, line)
            for out in outgoing(ev.turn_end(status, line)):
                queue.put_nowait(out)
            ended = True
        finally:
            for out in outgoing.flush():  # a held-back tail, when the turn did not end cleanly
                queue.put_nowait(out)
            if not ended and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                queue.put_nowait(ev.turn_end("interrupted"))
            queue.put_nowait(None)

    def _tool_runner(self, message: str, position: int, attachments: Sequence[Attachment] = ()) -> ToolRunner:
        return self.tools.run if self.playback is None else self.playback.tool_runner(message, position, attachments)

    async def _cancel_remote(self, backend: Backend) -> None:
        try:
            await asyncio.wait_for(backend.cancel(self.conv), timeout=10)
        except Exception as exc:
            log.info("remote cancel failed: %s", redact(str(exc), self.runtime.settings.api_key))
