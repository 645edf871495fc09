"""Replay: which recordings there are, which recorded turn answers a message, and the
stream source that serves it to the fake API with its recorded timing.

Replay never renders anything itself. It answers the `openai` client's requests (see
``replayapi``), so a replayed turn runs the same driver, adapter, transcript and UI code
as a live one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .backends.base import ToolCall
from .defaults import MAX_GAP
from .recording import SUFFIX, RecordedTurn, Recording, RecordingError, load_recording
from .replayapi import Script, TurnRequest
from .sse import RawEvent

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def normalize(text: str) -> str:
    """Matching key of a prompt: case, width, spacing and final punctuation ignored."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).rstrip(" .!?。！？")


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

    def match(self, message: str, position: int, parent: int | None = None) -> RecordedTurn | None:
        """The recorded turn for ``message`` as the ``position``-th user message of its
        chat, asked after the answer of recorded turn ``parent`` (None: unknown, or the
        first): the same text at that position (following that parent, if one does; of
        several, the last: the one whose answer stayed in the chat), else the first one
        after that position, else any. Retry asks the same again and gets the same turn."""
        if parent is None:
            parent = self.following
        key = normalize(message)
        candidates = [t for t in self.recording.turns if normalize(t.user) == key]
        if not candidates:
            return None
        here = [t for t in candidates if t.place == position]
        if here:
            followed = [t for t in here if t.parent is not None and t.parent == parent]
            return followed[-1] if followed else here[-1]
        later = [t for t in candidates if t.place > position]
        return later[0] if later else candidates[-1]

    def unmatched_text(self, message: str) -> str:
        prompts = "\n".join(f"- {p}" for p in dict.fromkeys(self.recording.prompts))
        return (
            f"This is a replay of the recording “{self.recording.name}”, and nothing in it answers "
            f"“{message.strip()[:200]}”. You can ask:\n{prompts}"
        )

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
        turn = self.match(request.user, request.position)
        if turn is None:
            message = self.unmatched_text(request.user)
            return Script(status=404, error={"message": message, "type": "invalid_request_error", "code": "no_recorded_turn"})
        streams = self._streams(turn)
        if request.stream == len(streams) and turn.status in ("interrupted", "cancelled"):
            return Script(events=[])  # cut off before its first event: an empty, unfinished stream
        if request.stream >= len(streams):
            message = f"The recording has no stream {request.stream} for turn {turn.index}."
            return Script(status=409, error={"message": message, "type": "invalid_request_error", "code": "no_recorded_stream"})
        return Script(events=streams[request.stream])

    def tool_output(self, message: str, position: int, call: ToolCall) -> str:
        """The recorded output of a call: replay never runs a handler again."""
        turn = self.match(message, position)
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
