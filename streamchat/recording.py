"""The recording format: JSON Lines, a header, then per turn the user's message, every
raw provider event with its time offset, tool outputs and an end object.

See docs/recording-format.md. The writer creates its file exclusively and flushes every
line, so a crash leaves a playable file whose last turn (no ``end``) reads as
interrupted. The reader is tolerant: it skips what it does not know, reports each bad
line by number, and keeps everything that is valid.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import IO, Any

from . import __version__, redact
from .attachments import elide_data_urls
from .events import TERMINAL_STATUSES, TurnStatus
from .redact import clean_text as clean_text  # re-exported: the writer's own rule
from .sse import APIS, Api, RawEvent

FORMAT = "streamchat-recording"
VERSION = 1
SUFFIX = ".jsonl"

MAX_TURN_BYTES = 8 * 1024 * 1024
"""A turn longer than this stops being recorded (the file keeps what it has)."""
MAX_FOLDER_BYTES = 512 * 1024 * 1024
"""A recordings folder larger than this takes no new recordings."""
MAX_FILE_BYTES = 64 * 1024 * 1024
"""A recording larger than this is not loaded for replay."""


class RecordingError(ValueError):
    """A recording that cannot be replayed at all (missing, no header, unknown version)."""


@dataclass
class RecordedStream:
    """One HTTP stream of a turn: its raw events with their offsets from the turn start."""

    events: list[tuple[float, RawEvent]] = field(default_factory=list)


@dataclass
class RecordedFile:
    """A file of a turn: one the user attached (``attachments`` of the turn line) or one
    a tool produced (a ``file`` line, with its ``file_id``)."""

    name: str
    mime: str | None = None
    size: int | None = None
    sha256: str | None = None
    """Hex digest of the bytes; None in recordings that kept only the name (imported)."""
    data: bytes | None = field(default=None, repr=False)
    """The bytes, when the recording kept them (``--record-attachments``, tool files)."""
    file_id: str | None = None


@dataclass
class RecordedRequest:
    """A provider request as it was sent (``request`` lines): kept for tools and tests;
    replay never reads it."""

    t: float
    method: str
    path: str
    body: Any


@dataclass
class RecordedTurn:
    index: int
    user: str
    streams: list[RecordedStream] = field(default_factory=list)
    tool_outputs: dict[str, str] = field(default_factory=dict)
    status: TurnStatus = "interrupted"
    """From the ``end`` object; a turn without one was cut off: interrupted."""
    duration: float = 0.0
    feedback: str | None = None
    """The last vote on the answer (``like`` or ``dislike``), from ``feedback`` lines."""
    position: int | None = None
    """User messages before this one in the chat (absent in older files: its index)."""
    parent: int | None = None
    """The turn whose answer the chat ended with when this one was asked (None: the first)."""

    @property
    def place(self) -> int:
        return self.index if self.position is None else self.position

    at: float | None = None
    """Seconds from the session's first turn to this one's start (``at``; older files have none)."""
    attachments: list[RecordedFile] = field(default_factory=list)
    """The files of the user's message, in order (the turn line's ``attachments``)."""
    files: dict[str, RecordedFile] = field(default_factory=dict)
    """Files tools produced, by the provider's file id (``file`` lines)."""
    requests: list[RecordedRequest] = field(default_factory=list)
    """The provider requests the turn made (``request`` lines), in order."""


@dataclass(frozen=True)
class Marker:
    """A chapter: a label at a turn (``marker`` lines), for demo mode to jump to."""

    turn: int
    label: str


@dataclass
class Recording:
    header: dict[str, Any]
    turns: list[RecordedTurn]
    problems: list[str] = field(default_factory=list)
    """One line per skipped or damaged line, naming its line number."""
    name: str = ""
    markers: list[Marker] = field(default_factory=list)
    """Chapters, in turn order."""

    @property
    def api(self) -> Api:
        return self.header["api"]

    @property
    def synthetic(self) -> bool:
        return self.header.get("source") == "synthetic"

    @property
    def prompts(self) -> list[str]:
        return [turn.user for turn in self.turns]


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def header(api: Api, model: str, config_sha256: str, *, source: str = "recorded", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "api": api,
        "model": model,
        "config_sha256": config_sha256,
        "created": _now_iso(),
        "app_version": __version__,
        "source": source,
        **extra,
    }


_UNSAFE = re.compile("[\u2028\u2029\u0085]")


def _line(obj: dict[str, Any]) -> str:
    """One JSON Lines line. U+2028, U+2029 and U+0085 are written as ``\\u`` escapes,
    since some readers split lines on them; a lone surrogate becomes U+FFFD."""
    line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    # These characters can only stand inside JSON strings, where an escape means the same.
    line = _UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", line)
    return clean_text(line) + "\n"


REDACTED = redact.REDACTED
SIGNED_PARAMS = redact.SIGNED_PARAMS
_scrub = redact.scrub


def _walk(value: Any, path: tuple[Any, ...], out: list[tuple[tuple[Any, ...], str]]) -> None:
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(v, (*path, k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, (*path, i), out)


def _delta_leaves(data: Any) -> list[tuple[tuple[Any, ...], str]]:
    """The streamed text of an event: the strings under its ``delta`` (Responses,
    Assistants) or its choices' ``delta`` (Chat Completions), with their paths."""
    out: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(data, dict):
        if "delta" in data:
            _walk(data["delta"], ("delta",), out)
        choices = data.get("choices")
        if isinstance(choices, list):
            for i, choice in enumerate(choices):
                if isinstance(choice, dict) and "delta" in choice:
                    _walk(choice["delta"], ("choices", i, "delta"), out)
    return out


def _set(root: Any, path: tuple[Any, ...], value: str) -> None:
    for step in path[:-1]:
        root = root[step]
    root[path[-1]] = value


@dataclass
class _Held:
    """An event line waiting while the end of its streamed text may be a key's start."""

    obj: dict[str, Any]
    leaves: list[tuple[tuple[Any, ...], str, str]]
    """(path in ``data``, channel, text) of each streamed-text leaf."""
    originals: list[str]


class FolderQuota:
    """The bytes in a recordings folder, shared by every writer into it, so the cap is
    checked on every write (not only when a session opens)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def measure(self, folder: Path) -> int:
        try:
            used = sum(p.stat().st_size for p in folder.glob("*" + SUFFIX) if p.is_file())
        except OSError:
            used = 0
        with self._lock:
            self.used = used
        return used

    def room(self) -> int:
        """Bytes still free under the limit."""
        with self._lock:
            return max(self.limit - self.used, 0)

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


BYTES_SHARE = 0.5
"""Kept bytes (``--record-attachments``, files tools produce) may take at most this share
of the room left under each cap, so the answer that follows still fits."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_body(content_type: str, content: bytes) -> Any:
    """What a ``request`` line keeps of a request body: JSON with its data URLs and
    inlined documents elided; a multipart upload's fields, each file part as its
    ``filename``, ``type``, ``size`` and ``sha256`` (never its bytes); anything else as
    its type, size and hash. None for an empty body."""
    if not content:
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
        message = BytesParser(policy=HTTP).parsebytes(head + content)
        if message.is_multipart():
            fields: dict[str, Any] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition") or ""
                decoded = part.get_payload(decode=True)
                payload = decoded if isinstance(decoded, bytes) else b""
                filename = part.get_filename()
                if filename is not None:
                    fields[str(name)] = {
                        "filename": filename,
                        "type": part.get_content_type(),
                        "size": len(payload),
                        "sha256": _digest(payload),
                    }
                else:
                    fields[str(name)] = payload.decode("utf-8", "replace")
            return {"multipart": fields}
    if kind == "application/json" or kind.endswith("+json") or not kind:
        try:
            return elide_data_urls(json.loads(content))
        except ValueError:
            pass
    return {"content_type": kind, "size": len(content), "sha256": _digest(content)}


class RecordingWriter:
    """Appends one session's turns to a new file, a flushed line at a time.

    It is also the driver's tap: ``stream_started``, ``event`` and ``tool_output`` are
    called as things happen, between ``begin_turn`` and ``end_turn``. It never raises
    into the chat: a failure stops recording and ``stopped`` says why.

    Caps are in UTF-8 bytes and checked before every line: a turn (``max_turn_bytes``),
    the file (``max_file_bytes``, the size replay accepts) and the folder (``quota``).
    A line that would cross one is not written; recording stops; the file keeps every
    complete line before it and stays playable.
    """

    def __init__(
        self,
        path: Path,
        head: dict[str, Any],
        *,
        clock: Any = time.monotonic,
        max_turn_bytes: int | None = None,
        max_file_bytes: int | None = None,
        quota: FolderQuota | None = None,
        secret: str | None = None,
        lock: contextlib.AbstractContextManager[Any] | None = None,
        record_attachments: bool = False,
    ) -> None:
        self.path = path
        self.record_attachments = record_attachments
        """Keep the bytes of the user's files in the turn line (``--record-attachments``)."""
        self._lock = lock if lock is not None else contextlib.nullcontext()
        """Held around each line's write: a folder uploader (CommitScheduler) that
        reads under the same lock never sees half a line."""
        self._secret = secret or None
        # The secret as it appears inside a serialized JSON string.
        self._secret_json = json.dumps(secret, ensure_ascii=False)[1:-1] if secret else None
        self._clock = clock
        self._max_turn_bytes = MAX_TURN_BYTES if max_turn_bytes is None else max_turn_bytes
        self._max_file_bytes = MAX_FILE_BYTES if max_file_bytes is None else max_file_bytes
        self._quota = quota
        self._file: IO[bytes] | None = None
        self._head = head
        self._turn = -1
        self._stream = -1
        self._start = 0.0
        self._turn_bytes = 0
        self.file_bytes = 0
        self._held: list[_Held] = []
        self._before: dict[str, str] = {}
        self._first: float | None = None
        self.stopped = ""
        """Why recording stopped early (a size cap, a write error); empty while it runs."""
        self._notice: str | None = None
        self._noticed = False

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # "x": never overwrite an existing recording.
            self._file = open(self.path, "xb")  # noqa: SIM115
            self._write(self._head)
        return self._file

    def _write(self, obj: dict[str, Any]) -> None:
        if self.stopped:
            return
        try:
            data = self._clean(obj).encode("utf-8")
        except (ValueError, TypeError) as exc:  # never into the chat as an unexpected error
            self.stopped = f"Recording stopped: a line could not be written ({type(exc).__name__})."
            return
        size = len(data)
        if obj.get("kind") != "end" and self._turn_bytes + size > self._max_turn_bytes:
            self.stopped = f"This turn passed the recording limit of {_mib(self._max_turn_bytes)}; recording stopped."
            return
        if self.file_bytes + size > self._max_file_bytes:
            self.stopped = f"This chat's recording reached its limit of {_mib(self._max_file_bytes)}; recording stopped."
            return
        if self._quota is not None and not self._quota.take(size):
            self.stopped = f"The recordings folder reached its limit of {_mib(self._quota.limit)}; recording stopped."
            return
        assert self._file is not None
        try:
            with self._lock:
                self._file.write(data)
                self._file.flush()
        except OSError as exc:
            self.stopped = f"Recording stopped: {exc.strerror or exc}."
            return
        self._turn_bytes += size
        self.file_bytes += size

    def _clean(self, obj: dict[str, Any]) -> str:
        """The object's line, never holding a key or a signed URL. The object is walked
        only when a cheap check on its line says it may need it."""
        line = _line(obj)
        if redact.may_need(line, self._secret_json):
            line = _line(_scrub(obj, self._secret))
        return line

    # -- keys split over streamed deltas ---------------------------------------------

    def _event_line(self, obj: dict[str, Any]) -> None:
        """Write an event, or hold it while its streamed text may end in a key's start."""
        found = _delta_leaves(obj.get("data"))
        if not found and not self._held:
            self._write(obj)
            return
        data = obj.get("data")
        base = (obj.get("event"), data.get("type") if isinstance(data, dict) else None)
        leaves = [(path, repr((base, tuple(p for p in path if isinstance(p, str)))), text) for path, text in found]
        if not self._held and all(self._plain(channel, text) for _, channel, text in leaves):
            for _, channel, text in leaves:  # the common case: nothing to hold or cut
                if text:
                    self._before[channel] = text[-1]
            self._write(obj)
            return
        self._held.append(_Held(obj, leaves, [text for _, text in found]))
        self._settle(final=False)

    def _plain(self, channel: str, text: str) -> bool:
        """Whether a delta, after what its channel wrote last, holds no key and ends in
        nothing that could start one."""
        ctx = self._before.get(channel, "")
        full = ctx + text
        return redact.hold_index(full, self._secret, len(ctx)) == len(full) and not any(
            b > len(ctx) for _, b in redact.spans(full, self._secret)
        )

    def _settle(self, *, final: bool) -> None:
        """Redact keys across the held events' texts, channel by channel, and write the
        events that can no longer be part of a key."""
        ready = len(self._held)
        channels: dict[str, list[tuple[int, int]]] = {}
        for i, held in enumerate(self._held):
            for j, (_, channel, _) in enumerate(held.leaves):
                channels.setdefault(channel, []).append((i, j))
        for channel, places in channels.items():
            ctx = self._before.get(channel, "")  # the last character written: context only
            pieces = [ctx] + [self._held[i].leaves[j][2] for i, j in places]
            text = "".join(pieces)
            found, hold = redact.split_safe(text, self._secret, len(ctx))
            if final:
                found = [(max(a, len(ctx)), b) for a, b in redact.spans(text, self._secret) if b > len(ctx)]
                hold = len(text)
            pieces = _cut(pieces, found)[1:] if found else pieces[1:]
            if found:
                for (i, j), piece in zip(places, pieces, strict=True):
                    path, name, _ = self._held[i].leaves[j]
                    self._held[i].leaves[j] = (path, name, piece)
            tail = len(text) - hold  # untouched by the cut: every span ends before it
            if tail:  # the event holding the tail's first character waits, and all after it
                start, pos = sum(map(len, pieces)) - tail, 0
                for (i, _), piece in zip(places, pieces, strict=True):
                    pos += len(piece)
                    if pos > start:
                        ready = min(ready, i)
                        break
        for held in self._held[:ready]:
            changed = [(path, text) for (path, _, text), old in zip(held.leaves, held.originals, strict=True) if text != old]
            if changed:  # a copy: the driver's own event data is never rewritten
                held.obj["data"] = copy.deepcopy(held.obj["data"])
                for path, text in changed:
                    _set(held.obj["data"], path, text)
            for _, channel, text in held.leaves:
                if text:
                    self._before[channel] = text[-1]
            self._write(held.obj)
        del self._held[:ready]

    def _release(self) -> None:
        if self._held:
            self._settle(final=True)

    # -- the tap ------------------------------------------------------------------------

    def _room(self) -> int:
        """Bytes a line may still add before it crosses a cap."""
        room = min(self._max_turn_bytes - self._turn_bytes, self._max_file_bytes - self.file_bytes)
        if self._quota is not None:
            room = min(room, self._quota.room())
        return room

    def _keep_bytes(self, size: int) -> bool:
        """Whether ``size`` more bytes of base64 fit the caps, within ``BYTES_SHARE``."""
        return size <= self._room() * BYTES_SHARE

    def _left_out(self, what: str) -> None:
        if not self._noticed:
            self._noticed = True
            self._notice = f"{what} recorded without its bytes: it would pass the recording's size limits."

    def take_notice(self) -> str | None:
        """A line for the chat, once per session: a file's bytes were left out."""
        notice, self._notice = self._notice, None
        return notice

    def _attachments(self, files: Sequence[Any]) -> list[dict[str, Any]]:
        """The turn line's ``attachments``: each file's ``meta()`` (or the dict given),
        with its bytes as ``data`` when they are recorded and fit the caps."""
        out: list[dict[str, Any]] = []
        budget = 0
        for item in files:
            meta = dict(item) if isinstance(item, dict) else item.meta()
            if self.record_attachments and not isinstance(item, dict):
                try:
                    data = item.read()
                except Exception:  # unreadable now: its metadata says what it was
                    data = None
                if data is not None:
                    size = 4 * ((len(data) + 2) // 3) + 10
                    if self._keep_bytes(budget + size):
                        meta["data"] = base64.b64encode(data).decode("ascii")
                        budget += size
                    else:
                        self._left_out(f"The attachment “{meta.get('name')}” was")
            out.append(meta)
        return out

    def begin_turn(self, user: str, *, attachments: Sequence[Any] | None = None, **place: Any) -> None:
        """Start a turn; ``place`` (``position``, ``parent``) says where it stands in the
        chat the user saw (see docs/recording-format.md). ``attachments`` are the
        message's files (``Attachment``s, or their ``meta()`` dicts)."""
        if self.stopped:
            return  # a stopped recording never touches the disk again
        try:
            self._open()
        except OSError as exc:  # a folder that cannot be written: the chat goes on unrecorded
            self.stopped = f"Recording stopped: {exc.strerror or exc}."
            return
        self._release()
        self._turn += 1
        self._stream = -1
        self._turn_bytes = 0
        self._start = self._clock()
        if self._first is None:
            self._first = self._start
        at = round(self._start - self._first, 4)
        line: dict[str, Any] = {"kind": "turn", "turn": self._turn, "user": user}
        line.update({k: v for k, v in place.items() if v is not None})
        if attachments:
            line["attachments"] = self._attachments(attachments)
        line["at"] = at
        self._write(line)

    @property
    def turn_number(self) -> int:
        """The index of the turn being (or last) written; -1 before the first."""
        return self._turn

    def _t(self) -> float:
        return round(self._clock() - self._start, 4)

    def stream_started(self) -> None:
        self._release()
        self._stream += 1

    def event(self, raw: RawEvent) -> None:
        obj: dict[str, Any] = {"kind": "event", "turn": self._turn, "stream": max(self._stream, 0), "t": self._t()}
        if raw.event is not None:
            obj["event"] = raw.event
        obj["data"] = raw.data
        self._event_line(obj)

    def tool_output(self, call_id: str, output: str) -> None:
        self._release()
        self._write({"kind": "tool_output", "turn": self._turn, "t": self._t(), "call_id": call_id, "output": output})

    def output_file(self, file_id: str, name: str, data: bytes) -> None:
        """A file a tool produced: kept whole (base64) so replay can serve it again, or
        by its name, size and hash alone when its bytes would pass a cap."""
        self._release()
        line: dict[str, Any] = {"kind": "file", "turn": self._turn, "t": self._t(), "file_id": file_id, "name": name}
        line["size"] = len(data)
        line["sha256"] = _digest(data)
        if self._keep_bytes(4 * ((len(data) + 2) // 3) + 200):
            line["data"] = base64.b64encode(data).decode("ascii")
        else:
            self._left_out(f"The file “{name}” a tool made was")
        self._write(line)

    def http_request(self, method: str, path: str, content_type: str, content: bytes) -> None:
        """A provider request as sent (``backends.base.REQUEST_TAP``): a ``request`` line
        with the body ``request_body`` keeps (no file's bytes, no headers)."""
        if self._turn < 0 or self.stopped:
            return
        self._release()
        try:
            body = request_body(content_type, content)
        except Exception as exc:  # never into the chat: the line says what it could not read
            body = {"unreadable": type(exc).__name__, "size": len(content)}
        line = {"kind": "request", "turn": self._turn, "t": self._t(), "method": method, "path": path, "body": body}
        if body is not None and not self._keep_bytes(len(_line(line).encode("utf-8"))):
            # A long chat's history comes with every request: the answer, not its copy, counts.
            line["body"] = {"omitted": "size", "size": len(content), "sha256": _digest(content)}
        self._write(line)

    def end_turn(self, status: TurnStatus) -> None:
        if self._turn < 0:
            return
        self._release()
        self._write({"kind": "end", "turn": self._turn, "t": self._t(), "status": status})

    def feedback(self, turn: int, value: str | None) -> bool:
        """A visitor's vote on turn ``turn``'s answer (``like``, ``dislike``, or None for a
        vote taken back); False when it cannot be written here (closed, stopped)."""
        if self._file is None or self.stopped or not 0 <= turn <= self._turn:
            return False
        self._write({"kind": "feedback", "turn": turn, "value": value, "time": _now_iso()})
        return not self.stopped

    def close(self) -> None:
        self._release()
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):  # a full disk fails the last flush too
                file.close()


def _cut(pieces: list[str], found: list[tuple[int, int]]) -> list[str]:
    """``pieces`` (consecutive parts of one text) with the ``found`` spans of the whole
    text redacted: a span's marker goes in the piece where it starts, the rest of the
    span is removed from the pieces it runs over."""
    out, pos = [], 0
    for piece in pieces:
        start, end = pos, pos + len(piece)
        parts, i = [], start
        for a, b in found:
            if b <= start or a >= end:
                continue
            if a > i:
                parts.append(piece[i - start : a - start])
            if a >= start:
                parts.append(REDACTED)
            i = max(i, min(b, end))
        parts.append(piece[i - start :])
        out.append("".join(parts))
        pos = end
    return out


def new_recording_path(folder: Path, stem: str) -> Path:
    """A fresh file name in ``folder`` (time-stamped; never an existing file)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    base = f"{stamp}-{stem}-{os.getpid()}"
    for n in range(1000):
        path = folder / f"{base}{'-' + str(n) if n else ''}{SUFFIX}"
        if not path.exists():
            return path
    raise RecordingError(f"no free file name in {folder}")


# -- reading ----------------------------------------------------------------------


def parse_recording(text: str, *, name: str = "") -> Recording:
    """Parse a recording, keeping every valid line and naming each bad one."""
    problems: list[str] = []
    head: dict[str, Any] | None = None
    turns: dict[int, RecordedTurn] = {}
    markers: list[tuple[int, Marker]] = []
    # Only \n ends a line: str.splitlines() would also split on U+2028, U+0085, \x1c… inside strings.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            if head is None:
                raise RecordingError(f"{name or 'recording'}: line {number}: the header is not valid JSON") from None
            problems.append(f"line {number}: not valid JSON, skipped")
            continue
        if not isinstance(obj, dict):
            if head is None:
                raise RecordingError(f"{name or 'recording'}: line {number}: expected the header first")
            problems.append(f"line {number}: not an object, skipped")
            continue
        kind = obj.get("kind")
        if head is None:
            if kind != "header":
                raise RecordingError(f"{name or 'recording'}: line {number}: expected the header first")
            head = obj
            _check_header(head, name)
            continue
        if kind not in ("turn", "event", "tool_output", "end", "feedback", "marker", "file", "request"):
            continue  # unknown kinds are skipped: newer writers may add some
        turn_no = obj.get("turn")
        if not isinstance(turn_no, int):
            problems.append(f"line {number}: no turn number, skipped")
            continue
        if kind == "turn":
            if not isinstance(obj.get("user"), str):
                problems.append(f"line {number}: turn without a user message, skipped")
                continue
            at = obj.get("at")
            at = float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) and at >= 0 else None
            turns[turn_no] = RecordedTurn(index=turn_no, user=obj["user"], at=at)
            for field_name in ("position", "parent"):  # newer files: where the turn stood
                value = obj.get(field_name)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    setattr(turns[turn_no], field_name, value)
            if "attachments" in obj:
                turns[turn_no].attachments = _read_attachments(obj["attachments"], number, problems)
            continue
        if kind == "marker":  # a chapter; checked against the turns once all are read
            if isinstance(obj.get("label"), str) and obj["label"].strip():
                markers.append((number, Marker(turn_no, obj["label"].strip())))
            else:
                problems.append(f"line {number}: marker without a label, skipped")
            continue
        turn = turns.get(turn_no)
        if turn is None:
            problems.append(f"line {number}: {kind} for unknown turn {turn_no}, skipped")
            continue
        if kind == "feedback":  # a vote, written whenever it was given: no time offset
            value = obj.get("value")
            turn.feedback = value if value in ("like", "dislike") else None
            continue
        t = obj.get("t", 0.0)
        if not isinstance(t, (int, float)) or t < 0:
            problems.append(f"line {number}: bad time offset, skipped")
            continue
        if kind == "event":
            stream = obj.get("stream", 0)
            if not isinstance(stream, int) or stream < 0 or stream > len(turn.streams):
                problems.append(f"line {number}: bad stream number, skipped")
                continue
            if stream == len(turn.streams):
                turn.streams.append(RecordedStream())
            turn.streams[stream].events.append((float(t), RawEvent(obj.get("event"), obj.get("data"))))
            turn.duration = max(turn.duration, float(t))
        elif kind == "tool_output":
            if isinstance(obj.get("call_id"), str) and isinstance(obj.get("output"), str):
                turn.tool_outputs[obj["call_id"]] = obj["output"]
            else:
                problems.append(f"line {number}: tool_output without call_id or output, skipped")
        elif kind == "file":
            found = _read_file(obj, f"line {number}: file", problems)
            if found is not None:
                turn.files[found.file_id or ""] = found
        elif kind == "request":
            if isinstance(obj.get("method"), str) and isinstance(obj.get("path"), str):
                turn.requests.append(RecordedRequest(float(t), obj["method"], obj["path"], obj.get("body")))
            else:
                problems.append(f"line {number}: request without method or path, skipped")
        elif kind == "end":
            status = obj.get("status")
            if status in TERMINAL_STATUSES:
                turn.status = status
                turn.duration = max(turn.duration, float(t))
            else:
                problems.append(f"line {number}: unknown end status {status!r}")
    if head is None:
        raise RecordingError(f"{name or 'recording'}: empty (no header)")
    ordered = [turns[k] for k in sorted(turns)]
    for number, marker in markers:
        if marker.turn not in turns:
            problems.append(f"line {number}: marker for unknown turn {marker.turn}, skipped")
    chapters = sorted((m for _, m in markers if m.turn in turns), key=lambda m: m.turn)
    return Recording(header=head, turns=ordered, problems=problems, name=name, markers=chapters)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _read_file(obj: Any, where: str, problems: list[str]) -> RecordedFile | None:
    """A file as a turn line's attachment or a ``file`` line holds it: a name, and
    optionally its type, size, SHA-256 and bytes (base64 ``data``). Bytes that do not
    decode or do not match the hash or size are dropped (the file stays, by name and
    hash); a file with no name, or a ``file`` line with no ``file_id``, is skipped."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        problems.append(f"{where} without a name, skipped")
        return None
    file_id = obj.get("file_id")
    if obj.get("kind") == "file" and (not isinstance(file_id, str) or not file_id):
        problems.append(f"{where} without a file_id, skipped")
        return None
    found = RecordedFile(
        name=obj["name"],
        mime=obj["type"] if isinstance(obj.get("type"), str) else None,
        size=_count(obj.get("size")),
        file_id=file_id if isinstance(file_id, str) else None,
    )
    sha = obj.get("sha256")
    if isinstance(sha, str) and _SHA256.match(sha.lower()):
        found.sha256 = sha.lower()
    elif sha is not None:
        problems.append(f"{where} “{found.name}”: sha256 is not a SHA-256 hex digest, ignored")
    data = obj.get("data")
    if data is not None:
        try:
            raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        except ValueError:
            raw = None
        if raw is None:
            problems.append(f"{where} “{found.name}”: data is not base64, dropped")
        elif found.sha256 is not None and _digest(raw) != found.sha256:
            problems.append(f"{where} “{found.name}”: data does not match its sha256, dropped")
        elif found.size is not None and len(raw) != found.size:
            problems.append(f"{where} “{found.name}”: data does not match its size, dropped")
        else:
            found.data = raw
            found.sha256 = found.sha256 or _digest(raw)
            found.size = len(raw)
    return found


def _read_attachments(value: Any, number: int, problems: list[str]) -> list[RecordedFile]:
    if not isinstance(value, list):
        problems.append(f"line {number}: attachments is not a list, ignored")
        return []
    out = []
    for i, item in enumerate(value):
        found = _read_file(item, f"line {number}: attachment {i}", problems)
        if found is not None:
            out.append(found)
    return out


def _check_header(head: dict[str, Any], name: str) -> None:
    label = name or "recording"
    if head.get("format") != FORMAT:
        raise RecordingError(f"{label}: not a {FORMAT} file (format={head.get('format')!r})")
    version = head.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise RecordingError(f"{label}: format version {version!r} is not supported (this app reads {VERSION})")
    if head.get("api") not in APIS:
        raise RecordingError(f"{label}: unknown api {head.get('api')!r}")


def load_recording(path: Path, *, name: str = "") -> Recording:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RecordingError(f"{name or path.name}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecordingError(f"{name or path.name}: no such recording") from None
    except OSError as exc:
        raise RecordingError(f"{name or path.name}: cannot read ({exc.strerror})") from None
    return parse_recording(data.decode("utf-8", errors="replace"), name=name or path.stem)


def add_marker(path: Path, turn: int, label: str) -> None:
    """Append a ``marker`` line (a chapter at ``turn``) to the recording at ``path``;
    ``RecordingError`` for a file that is not one or a turn it does not hold."""
    recording = load_recording(path)
    if not label.strip():
        raise RecordingError("the label is empty")
    numbers = [t.index for t in recording.turns]
    if turn not in numbers:
        held = f"turns 0 to {max(numbers)}" if numbers else "no turns"
        raise RecordingError(f"{path.name}: no turn {turn} (it holds {held})")
    data = path.read_bytes()
    with open(path, "a", encoding="utf-8") as file:
        if data and not data.endswith(b"\n"):
            file.write("\n")  # a cut last line stays a bad line of its own
        file.write(_line({"kind": "marker", "turn": turn, "label": label.strip()}))


def main(argv: list[str] | None = None) -> int:
    """``python -m streamchat.recording mark FILE TURN LABEL``: add a chapter."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m streamchat.recording", description="Recording tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    mark = commands.add_parser("mark", help="add a chapter marker (a label at a turn) for demo mode")
    mark.add_argument("file", type=Path)
    mark.add_argument("turn", type=int)
    mark.add_argument("label")
    args = parser.parse_args(argv)
    try:
        add_marker(args.file, args.turn, args.label)
    except RecordingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file.name}: marker at turn {args.turn}: {args.label.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
