"""Replay: which recordings there are, which recorded turn answers a message, and the
stream source that serves it to the fake API with its recorded timing.

Replay never renders anything itself. It answers the `openai` client's requests (see
``replayapi``), so a replayed turn runs the same driver, adapter, transcript and UI code
as a live one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .backends.base import ToolCall
from .defaults import MAX_GAP
from .recording import SUFFIX, RecordedFile, RecordedTurn, Recording, RecordingError, load_recording
from .replayapi import Script, TurnRequest
from .sse import RawEvent

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def normalize(text: str) -> str:
    """Matching key of a prompt: case, width, spacing and final punctuation ignored."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).rstrip(" .!?。！？")


class FileLike(Protocol):
    """What matching reads of a message's file (``attachments.Attachment`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def sha256(self) -> str: ...


Files = Sequence[FileLike | str]
"""A message's files, in order: each an attachment (name and hash) or a SHA-256 alone
(what the fake API's ``TurnRequest.attachments`` carries)."""


def searchable_files(request: TurnRequest) -> tuple[str, ...]:
    """The SHA-256s of the files a request's file_search can reach (its vector stores')."""
    return tuple(getattr(request, "searchable", ()) or ())


def request_files(request: TurnRequest) -> tuple[str, ...] | None:
    """The SHA-256s of the files of the user message a request answers, in order; None
    from a fake API that does not say (a ``TurnRequest`` without ``attachments``)."""
    files = getattr(request, "attachments", None)
    return None if files is None else tuple(f for f in files if isinstance(f, str))


def name_key(name: str) -> str:
    """Matching key of a file name (the fallback for files recorded without a hash)."""
    return unicodedata.normalize("NFKC", name.replace("\\", "/").rsplit("/", 1)[-1]).casefold().strip()


def same_files(
    recorded: Sequence[RecordedFile], asked: Sequence[tuple[str | None, str | None]], searchable: Sequence[str] = ()
) -> bool:
    """Whether a message's files, as ``(sha256, name)``, are a recorded turn's, in any
    order: each asked file is a recorded one with the same bytes (SHA-256), or, for a
    file recorded without a hash (an imported recording), the same name; and each
    recorded file is asked, or is among ``searchable`` (the SHA-256s of the files the
    request's file_search can reach: a document sent to a vector store is not in the
    message, and stays there when the turn is retried)."""
    left = list(recorded)
    for sha, name in asked:
        found = next((r for r in left if r.sha256 is not None and sha is not None and sha.lower() == r.sha256), None)
        if found is None:
            found = next((r for r in left if r.sha256 is None and name is not None and name_key(name) == name_key(r.name)), None)
        if found is None:
            return False
        left.remove(found)
    reachable = {s.lower() for s in searchable}
    return all(r.sha256 is not None and r.sha256 in reachable for r in left)


def describe_files(files: Sequence[RecordedFile] | Sequence[tuple[str | None, str | None]]) -> str:
    """``a.png, b.pdf``: file names (a short hash for a file known by its hash alone)."""
    names = []
    for f in files:
        if isinstance(f, RecordedFile):
            names.append(f.name)
        else:
            sha, name = f
            names.append(name or f"a file with SHA-256 {(sha or '?')[:12]}…")
    return ", ".join(names)


def capped(offsets: list[float], max_gap: float) -> list[float]:
    """Shift offsets so that no silence (the start included) is longer than ``max_gap``."""
    out, prev, shifted = [], 0.0, 0.0
    for t in offsets:
        shifted += min(max(t - prev, 0.0), max_gap)
        prev = t
        out.append(round(shifted, 4))
    return out


@dataclass
class Player:
    """One recording, served turn by turn."""

    recording: Recording
    max_gap: float = MAX_GAP
    _schedule: dict[int, list[list[tuple[float, RawEvent]]]] = field(default_factory=dict)
    following: int | None = None
    """The recorded turn whose answer the chat now ends with (set by the session before
    a turn), so a branch recorded live (Retry, Edit) replays the way it went."""
    pinned: int | None = None
    """Demo mode plays this recorded turn now: a message with its text gets it whatever
    files come with it (the demo sends the recorded files only when it has their bytes)."""
    names: dict[str, str] = field(default_factory=dict)
    """File names by SHA-256, learned from the messages matched with their names (the
    session's), so the fake API's request, which carries hashes only, can match a file
    recorded by name alone."""

    def keys(self, files: Files) -> list[tuple[str | None, str | None]]:
        """``(sha256, name)`` of each file; a bare hash gets the name learned for it."""
        out: list[tuple[str | None, str | None]] = []
        for f in files:
            if isinstance(f, str):
                out.append((f, self.names.get(f)))
            else:
                self.names[f.sha256] = f.name
                out.append((f.sha256, f.name))
        return out

    def match(
        self,
        message: str,
        position: int,
        parent: int | None = None,
        attachments: Files | None = (),
        searchable: Sequence[str] = (),
    ) -> RecordedTurn | None:
        """The recorded turn for ``message`` with its files ``attachments`` (and the files
        its file_search can reach, ``searchable``) as the
        ``position``-th user message of its chat, asked after the answer of recorded turn
        ``parent`` (None: unknown, or the first): among the turns with the same text and
        the same files (``same_files``), the one at that position (following that parent,
        if one does; of several, the last: the one whose answer stayed in the chat), else
        the first one after that position, else any. Retry asks the same again and gets
        the same turn. ``attachments`` None: the files are not known, not compared."""
        if parent is None:
            parent = self.following
        key = normalize(message)
        asked = None if attachments is None else self.keys(attachments)
        pinned = [t for t in self.recording.turns if t.index == self.pinned and normalize(t.user) == key]
        if pinned:
            return pinned[0]
        candidates = [
            t
            for t in self.recording.turns
            if normalize(t.user) == key and (asked is None or same_files(t.attachments, asked, searchable))
        ]
        if not candidates:
            return None
        here = [t for t in candidates if t.place == position]
        if here:
            followed = [t for t in here if t.parent is not None and t.parent == parent]
            return followed[-1] if followed else here[-1]
        later = [t for t in candidates if t.place > position]
        return later[0] if later else candidates[-1]

    def prompt_lines(self) -> list[str]:
        """The recording's prompts, each with the files it was asked with."""
        lines = []
        for turn in self.recording.turns:
            files = f" (with {describe_files(turn.attachments)})" if turn.attachments else ""
            lines.append(f"- {turn.user}{files}")
        return list(dict.fromkeys(lines))

    def unmatched_text(self, message: str, attachments: Files | None = ()) -> str:
        prompts = "\n".join(self.prompt_lines())
        asked = self.keys(attachments or ())
        files = f" with {describe_files(asked)}" if asked else ""
        return (
            f"This is a replay of the recording “{self.recording.name}”, and nothing in it answers "
            f"“{message.strip()[:200]}”{files}. You can ask:\n{prompts}"
        )

    def file_content(self, file_id: str) -> tuple[str, bytes] | None:
        """A file a tool produced in the recording (a ``file`` line), as ``(name, bytes)``,
        for the fake API to serve; None when it holds no such file or not its bytes."""
        for turn in self.recording.turns:
            found = turn.files.get(file_id)
            if found is not None and found.data is not None:
                return found.name, found.data
        return None

    def _streams(self, turn: RecordedTurn) -> list[list[tuple[float, RawEvent]]]:
        """The turn's streams with capped offsets, computed over the whole turn: the
        gap between two streams (a tool's run time) is capped like any other."""
        if turn.index not in self._schedule:
            offsets = capped([t for s in turn.streams for t, _ in s.events], self.max_gap)
            out, i = [], 0
            for stream in turn.streams:
                n = len(stream.events)
                out.append([(offsets[i + k], raw) for k, (_, raw) in enumerate(stream.events)])
                i += n
            self._schedule[turn.index] = out
        return self._schedule[turn.index]

    def __call__(self, request: TurnRequest) -> Script:
        """The ``StreamSource`` for the fake API."""
        files = request_files(request)
        turn = self.match(request.user, request.position, attachments=files, searchable=searchable_files(request))
        if turn is None:
            message = self.unmatched_text(request.user, files)
            return Script(status=404, error={"message": message, "type": "invalid_request_error", "code": "no_recorded_turn"})
        streams = self._streams(turn)
        if request.stream == len(streams) and turn.status in ("interrupted", "cancelled"):
            return Script(events=[])  # cut off before its first event: an empty, unfinished stream
        if request.stream >= len(streams):
            message = f"The recording has no stream {request.stream} for turn {turn.index}."
            return Script(status=409, error={"message": message, "type": "invalid_request_error", "code": "no_recorded_stream"})
        return Script(events=streams[request.stream])

    def tool_output(self, message: str, position: int, call: ToolCall, attachments: Files = ()) -> str:
        """The recorded output of a call: replay never runs a handler again."""
        turn = self.match(message, position, attachments=attachments)
        if turn is not None and call.call_id in turn.tool_outputs:
            return turn.tool_outputs[call.call_id]
        return f"Error: the recording has no output for call {call.call_id}."


class Library:
    """The recordings under a file or folder, by the names this server lists itself.

    Only plain files directly in the folder, named like ``good-name.jsonl``, are
    listed; a name from the UI is looked up in that list, never joined to a path, so
    ``../``, absolute paths and symlinks cannot reach anything else.
    """

    def __init__(self, path: Path) -> None:
        self.root = path
        self.problems: list[str] = []
        self._paths: dict[str, Path] = {}
        if path.is_file() and not path.is_symlink():
            self._paths[path.stem] = path
        elif path.is_dir():
            for entry in sorted(path.iterdir()):
                if entry.suffix != SUFFIX:
                    continue
                if entry.is_symlink() or not entry.is_file():
                    self.problems.append(f"{entry.name}: not a plain file, skipped")
                    continue
                if not _NAME.match(entry.stem):
                    self.problems.append(f"{entry.name}: unusual file name, skipped")
                    continue
                self._paths[entry.stem] = entry
        elif path.exists():
            raise RecordingError(f"{path}: not a plain file or folder")
        else:
            raise RecordingError(f"{path}: no such file or folder")
        self._cache: dict[str, Recording] = {}

    @property
    def names(self) -> list[str]:
        return list(self._paths)

    def load(self, name: str) -> Recording:
        path = self._paths.get(name)
        if path is None:
            raise RecordingError(f"{name!r} is not one of the listed recordings")
        if name not in self._cache:
            if path.is_symlink():
                raise RecordingError(f"{name}: became a symlink; refused")
            self._cache[name] = load_recording(path, name=name)
        return self._cache[name]

    def playable(self) -> list[str]:
        """Names that load, in order; each one that does not is noted in ``problems``."""
        out = []
        for name in self.names:
            try:
                self.load(name)
            except RecordingError as exc:
                self.problems.append(str(exc))
                continue
            out.append(name)
        return out
