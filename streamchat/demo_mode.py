"""Demo mode: a whole recording played hands-free, like a screencast of the chat.

``play`` is an async generator over a ``Recording`` that yields ``Frame``s (what the
chat shows now): each recorded user message is typed into the message box at a quick,
human-looking pace, sent, and answered through the same replay path as a typed message
(``ChatSession.turn`` with the replay backend), with the recorded pause between turns
(capped by ``max_gap``). ``Controls`` pauses, resumes and stops it from any task.

No Gradio here: the browser UI and the terminal chat each turn frames into their own
output. Time is injected (``Controls``' base clock and ``play``'s ``sleep``), so tests
run on a fake clock without waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .attachments import Attachment
from .playback import recorded_attachments
from .recording import RecordedTurn, Recording

TYPING_DELAY = 0.045
"""Seconds per typed character at speed 1 (about 22 characters a second)."""
TYPING_MAX = 2.5
"""Seconds at most to type one message at speed 1 (a long prompt is typed faster)."""
TYPING_STEPS = 60
"""At most this many visible steps per message (a long prompt grows several characters a step)."""
SEND_PAUSE = 0.3
"""Seconds between the typed message and its sending (the Enter key)."""
DEFAULT_GAP = 1.5
"""Seconds between turns when the recording does not say (capped by ``max_gap``)."""
LOOP_PAUSE = 3.0
"""Seconds the end stays on screen before a looping demo starts again."""
POLL = 0.1
"""Seconds: a wait re-reads the speed and the pause this often."""

State = Literal["typing", "sending", "answering", "waiting", "done", "stopped"]


class Chat(Protocol):
    """What the player drives: ``ChatSession`` fits (``reset``, ``turn``, ``set_speed``)."""

    @property
    def speed(self) -> float: ...

    async def reset(self) -> None: ...

    def set_speed(self, speed: float) -> None: ...

    def turn(
        self,
        message: str,
        history: list[dict[str, Any]],
        stop: asyncio.Event | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> AsyncIterator[Any]: ...


@dataclass
class Frame:
    """What the chat shows at one moment of the demo."""

    history: list[dict[str, Any]]
    """The chat's messages (Gradio's messages format), the running answer included."""
    draft: str
    """The message box: the prompt being typed, empty otherwise."""
    turn: int
    """The recorded turn being played (-1 before the first)."""
    state: State
    answer: Any = None
    """While answering: the turn's latest value as ``ChatSession.turn`` yields it."""


class Controls:
    """Pause, Resume and Stop for one demo, and its clock: the clock stands still while
    paused, so a replay paced by it (``ReplayAPI.clock``) holds its stream too."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._base = clock
        self._paused_at: float | None = None
        self._paused_for = 0.0
        self.running = asyncio.Event()
        """Clear while paused."""
        self.running.set()
        self.stopped = asyncio.Event()
        """Set by Stop: the demo ends (a running answer ends as stopped, kept)."""
        self.idle = asyncio.Event()
        """Set while no demo plays."""
        self.idle.set()

    def clock(self) -> float:
        """Seconds, not counting the time spent paused."""
        now = self._base() if self._paused_at is None else self._paused_at
        return now - self._paused_for

    @property
    def paused(self) -> bool:
        return not self.running.is_set()

    @property
    def playing(self) -> bool:
        return not self.idle.is_set()

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self._base()
            self.running.clear()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._paused_for += self._base() - self._paused_at
            self._paused_at = None
            self.running.set()

    def stop(self) -> None:
        self.stopped.set()
        self.resume()

    def begin(self) -> None:
        """A new demo starts: not stopped, not paused, not idle."""
        self.resume()
        self.stopped.clear()
        self.idle.clear()

    async def end_running(self) -> None:
        """Stop the demo that plays, if one does, and wait until it has ended."""
        if self.playing:
            self.stop()
            await self.idle.wait()

    async def wait_running(self) -> None:
        """Until not paused (or stopped)."""
        if self.paused and not self.stopped.is_set():
            stop = asyncio.ensure_future(self.stopped.wait())
            run = asyncio.ensure_future(self.running.wait())
            try:
                await asyncio.wait({stop, run}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                run.cancel()


@dataclass
class Timing:
    """How the demo paces what is not in the provider's events."""

    typing: bool = True
    """Type each prompt a character group at a time; False shows it at once."""
    max_gap: float = 2.0
    """Seconds at most between turns (at speed 1), like ``--max-gap`` for events."""
    seed: int = 0
    """For the typing rhythm: the same demo types the same way every time."""
    loop: bool = False
    """Start again (a new chat) after ``LOOP_PAUSE`` at the end."""


def typing_steps(message: str, rng: random.Random) -> list[tuple[int, float]]:
    """(characters shown, seconds to wait before showing them at speed 1) for typing
    ``message``: about ``TYPING_DELAY`` a character, uneven like a person's, at most
    ``TYPING_MAX`` in all."""
    if not message:
        return []
    steps = min(len(message), TYPING_STEPS)
    per = min(TYPING_DELAY * len(message), TYPING_MAX) / steps
    out = []
    for k in range(1, steps + 1):
        shown = round(len(message) * k / steps)
        out.append((shown, per * rng.uniform(0.5, 1.5)))
    return out


def turn_gaps(recording: Recording, max_gap: float) -> list[float]:
    """Seconds of silence (at speed 1) before each turn is typed: the recorded pause
    between the end of an answer and the next message where the recording has its
    turns' start times (``at``), else ``DEFAULT_GAP``; each capped at ``max_gap``."""
    gaps: list[float] = []
    previous = None
    for turn in recording.turns:
        if previous is None:
            gap = min(DEFAULT_GAP, 0.5)  # a moment to see the empty chat
        elif turn.at is not None and previous.at is not None:
            gap = max(turn.at - (previous.at + previous.duration), 0.0)
        else:
            gap = DEFAULT_GAP
        gaps.append(min(gap, max_gap))
        previous = turn
    return gaps


def asked_message(turn: RecordedTurn, files: Sequence[Attachment]) -> dict[str, Any]:
    """The user's message as the chat shows it: the recorded files' thumbnails (when the
    recording kept their bytes), then the prompt."""
    from .session import user_content  # the page's own form of a message with files

    content = user_content(turn.user, files)
    if files:  # with its type, the page shows an image as a picture, not as a file link
        for part, file in zip(content, files, strict=False):
            part["file"]["mime_type"] = file.mime
    return {"role": "user", "content": content}


def _pin(chat: Chat, turn: int | None) -> None:
    """The recorded turn the demo's next message is (None: no longer): it answers even
    when the recording lacks its files' bytes, so the demo cannot send them again."""
    playback = getattr(chat, "playback", None)  # a ChatSession in replay mode
    if playback is not None:
        playback.pin(turn)


def _send(
    chat: Chat, turn: RecordedTurn, history: list[dict[str, Any]], controls: Controls, files: tuple[Attachment, ...]
) -> AsyncIterator[Any]:
    """The recorded prompt sent, with the recorded files when there are some."""
    if files:
        return chat.turn(turn.user, history, controls.stopped, attachments=files)
    return chat.turn(turn.user, history, controls.stopped)


def answer_messages(value: Any) -> list[dict[str, Any]]:
    """A turn's value (``ChatSession.turn``: a string or a list of messages) as messages."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if isinstance(value, dict):
        return [value]
    return [dict(m) for m in value]


@dataclass
class _Clocked:
    controls: Controls
    speed: Callable[[], float]
    sleep: Callable[[float], Awaitable[Any]]
    waited: list[float] = field(default_factory=list)

    async def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` of demo time (at speed 1): scaled by the speed as it is now
        (re-read every ``POLL``), paused time not counted. False when stopped."""
        done = 0.0
        while seconds - done > 1e-6:  # closer than that: a float's rounding, not a wait
            if self.controls.stopped.is_set():
                return False
            await self.controls.wait_running()
            speed = self.speed()
            if speed <= 0:
                break
            step = min((seconds - done) / speed, POLL)
            before = self.controls.clock()
            await self.sleep(step)
            done += max(self.controls.clock() - before, 0.0) * speed
        return not self.controls.stopped.is_set()


async def play(
    recording: Recording,
    chat: Chat,
    controls: Controls,
    *,
    timing: Timing | None = None,
    start: int = 0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> AsyncIterator[Frame]:
    """Play ``recording`` through ``chat`` from turn ``start``, yielding a ``Frame`` for
    every change to show. The chat is reset first; turns before ``start`` are replayed
    at once (so the conversation and its matching are as recorded), then each turn is
    typed, sent and answered at the recorded pace, ``chat.speed`` applying live.

    While paused nothing is yielded; Stop ends it after yielding the partial turn (its
    answer marked stopped by ``chat.turn``) with state ``stopped``.
    """
    timing = timing or Timing()
    clocked = _Clocked(controls, lambda: chat.speed, sleep)
    rng = random.Random(timing.seed)
    gaps = turn_gaps(recording, timing.max_gap)
    turns = recording.turns
    start = max(0, min(start, len(turns)))
    controls.begin()
    try:
        while True:
            await chat.reset()
            history: list[dict[str, Any]] = []
            yield Frame([], "", -1, "waiting")
            for turn in turns[:start]:  # fast-forward to the chapter, shown at once
                history = await _instant_turn(chat, turn, history, controls)
                if controls.stopped.is_set():
                    yield Frame(history, "", turn.index, "stopped")
                    return
            if start:
                yield Frame(list(history), "", turns[start - 1].index, "waiting")
            for turn in turns[start:]:
                if not await clocked.wait(gaps[turns.index(turn)]):
                    yield Frame(history, "", turn.index, "stopped")
                    return
                if timing.typing:
                    for shown, delay in typing_steps(turn.user, rng):
                        if not await clocked.wait(delay):
                            yield Frame(history, turn.user[:shown], turn.index, "stopped")
                            return
                        yield Frame(history, turn.user[:shown], turn.index, "typing")
                    if not await clocked.wait(SEND_PAUSE):
                        yield Frame(history, turn.user, turn.index, "stopped")
                        return
                files = recorded_attachments(turn)
                asked = [*history, asked_message(turn, files)]
                yield Frame(asked, "", turn.index, "sending")
                value: Any = None
                _pin(chat, turn.index)
                async for value in _send(chat, turn, history, controls, files):
                    await controls.wait_running()  # paused: the page holds still
                    yield Frame([*asked, *answer_messages(value)], "", turn.index, "answering", value)
                history = [*asked, *answer_messages(value)]
                if controls.stopped.is_set():
                    yield Frame(history, "", turn.index, "stopped", value)
                    return
            yield Frame(history, "", turns[-1].index if turns else -1, "done")
            if not timing.loop or not turns or not await clocked.wait(LOOP_PAUSE):
                return
            start = 0
    finally:
        _pin(chat, None)
        controls.idle.set()


async def _instant_turn(
    chat: Chat, turn: RecordedTurn, history: list[dict[str, Any]], controls: Controls
) -> list[dict[str, Any]]:
    """One turn at speed 0 (a chapter's earlier turns): the history after it."""
    speed = chat.speed
    chat.set_speed(0)
    value: Any = None
    files = recorded_attachments(turn)
    _pin(chat, turn.index)
    try:
        async for latest in _send(chat, turn, history, controls, files):
            value = latest
    finally:
        chat.set_speed(speed)
    return [*history, asked_message(turn, files), *answer_messages(value)]
