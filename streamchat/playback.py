"""A chat session's replay wiring: the recording it plays, the ``Player`` that answers
from it, the in-process ``ReplayAPI`` the real `openai` client talks to, and the backend
on that client.

Replay happens at the HTTP boundary (docs/architecture.md), so all a session needs from
here is a backend like the live one, the answer for a message no recorded turn answers,
and the recorded tool outputs: the driver, adapter, transcript and UI are the live ones.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import openai

from . import events as ev
from .attachments import IMAGE_TYPES, Attachment, Kind
from .backends import BACKENDS, Backend
from .backends.base import ToolCall, ToolRunner
from .config import Config
from .events import StreamEvent
from .recording import RecordedFile, RecordedTurn, Recording
from .replay import Files, Library, Player
from .replayapi import ReplayAPI
from .serve import ReplayTransport

# -- a recording's own files, for thumbnails and demo mode ------------------------------

_folder: Path | None = None
_folder_lock = threading.Lock()
_UNSAFE_NAME = re.compile(r"[^\w.\- ()]+")


def files_folder() -> Path:
    """This process's private folder for recorded attachments' bytes (``0700``, under
    the system's temporary folder, which Gradio may serve from), removed at exit."""
    global _folder
    with _folder_lock:
        if _folder is None or not _folder.is_dir():
            _folder = Path(tempfile.mkdtemp(prefix="streamchat-files-"))
            atexit.register(shutil.rmtree, _folder, True)
        return _folder


def safe_name(name: str) -> str:
    """A recorded file name fit to be a file's name: no folders, no leading dot, no
    characters a file system or URL may choke on, at most 100 characters."""
    base = _UNSAFE_NAME.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    stem, ext = os.path.splitext(base)
    return (stem[: 100 - len(ext[:16])] + ext[:16]) or "file"


def file_path(file: RecordedFile) -> Path | None:
    """Where a recorded file's bytes are on disk (written once per process, under its
    own name, in a folder named by its hash); None when the recording has no bytes."""
    if file.data is None or file.sha256 is None:
        return None
    path = files_folder() / file.sha256[:32] / safe_name(file.name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{threading.get_ident()}.part")
        part.write_bytes(file.data)
        os.replace(part, path)  # whole or absent, whoever reads it
    return path


def recorded_attachments(turn: RecordedTurn) -> tuple[Attachment, ...]:
    """A recorded turn's files as attachments to send again (demo mode), bytes
    included; () when the recording lacks the bytes of any of them (then the turn can
    be asked with its text only, and answers only a message with the same files)."""
    out = []
    for file in turn.attachments:
        path = file_path(file)
        if path is None or file.data is None or file.sha256 is None:
            return ()
        mime = file.mime or "application/octet-stream"
        kind: Kind = "image" if mime in IMAGE_TYPES.values() else "document"
        out.append(Attachment(file.name, mime, len(file.data), file.sha256, kind, path=path, data=file.data))
    return tuple(out)


def example_messages(recording: Recording) -> list[dict[str, Any]]:
    """The chat's examples for a recording: each prompt once (with the files it was
    asked with), as ``{"text": prompt}`` or, when the recording kept the files' bytes,
    ``{"text": prompt, "files": [path, …]}`` so the example shows their thumbnails."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for turn in recording.turns:
        files = [str(a.path) for a in recorded_attachments(turn)]
        key = (turn.user, tuple(f.sha256 or f.name for f in turn.attachments))
        if key in seen:
            continue
        seen.add(key)
        out.append({"text": turn.user, "files": files} if files else {"text": turn.user})
    return out


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

    def pin(self, turn: int | None) -> None:
        """Demo mode: the recorded turn its next message is (None: none), see ``Player.pinned``."""
        if self.name is not None:
            self.loaded_player().pinned = turn

    def answer_locally(self, message: str, position: int, attachments: Files = ()) -> StreamEvent | None:
        """The reply for a message (with its files) no recorded turn answers: never
        someone else's answer."""
        if self.name is None:
            return ev.notice("There is no recording to replay, and no OPENAI_API_KEY is set.")
        player = self.loaded_player()
        if player.match(message, position, attachments=attachments) is None:
            return ev.text(player.unmatched_text(message, attachments))
        return None

    def tool_runner(self, message: str, position: int, attachments: Files = ()) -> ToolRunner:
        """Recorded tool outputs: replay never runs a handler again."""
        player = self.loaded_player()

        async def recorded(call: ToolCall) -> str:
            return player.tool_output(message, position, call, attachments)

        return recorded
