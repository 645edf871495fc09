"""What the fake API's handlers share: the request and reply types, and the model's
context as the handlers compute it from their own state."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..attachments import data_url_bytes, parse_inline
from ..sse import Api, RawEvent

Context = list[tuple[str, str]]
"""What the model sees, in order: ``(role, text)`` with role ``user``, ``assistant``,
``tool_call`` (text: the function's name and arguments) or ``tool_output``, and after a
user entry its attachments: ``image`` or ``file`` with the SHA-256 of the file's bytes
(however it was sent: a data URL, a file id, inlined text), or ``unknown:<file id>``.
Instructions and system messages are left out."""

ATTACHMENT_ROLES = ("image", "file")


class StreamDropped(Exception):
    """A stream cuts the connection here (a transport turns it into a reset)."""


@dataclass
class Script:
    """What to send for one streaming request."""

    events: list[tuple[float, RawEvent]] = field(default_factory=list)
    """Raw events with their offsets (s) from the start of the turn, sent verbatim."""
    status: int = 200
    """Anything but 200 answers with ``error`` as a JSON error body instead of a stream."""
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    """Files the stream's tools produce, by file id: ``(name, bytes)``, served for download."""


@dataclass(frozen=True)
class TurnRequest:
    """A streaming request, placed in its conversation."""

    api: Api
    user: str
    """The user message this turn answers (the last one in the model's context)."""
    position: int
    """That message's index among the user messages of the model's context (0 for the first)."""
    stream: int
    """The stream's index within the turn (tool loops open several)."""
    body: dict[str, Any]
    context: tuple[tuple[str, str], ...] = ()
    """What the model sees for this request (see ``Context``)."""
    attachments: tuple[str, ...] = ()
    """The SHA-256s of the files of the user message this turn answers, in order."""
    searchable: tuple[str, ...] = ()
    """The SHA-256s of the files the request's file_search can reach (its vector stores'):
    a document sent for file_search is there, not in the message."""


class StreamSource(Protocol):
    def __call__(self, request: TurnRequest) -> Script: ...


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering at all."""
    raw: bytes | None = None
    """A body sent as these bytes (a file's content) instead of JSON."""


@dataclass
class Logged:
    method: str
    path: str
    body: Any
    event: str = "request"
    """``request``, or ``disconnected`` when the client closed a stream before its end."""
    context: Context | None = None
    """For a streaming request: what the model saw (see ``Context``)."""
    stores: dict[str, list[str]] | None = None
    """For a streaming request with file_search: each vector store the model could
    search, with the SHA-256s of its files."""


@dataclass
class Turn:
    """Where a streaming request stands: the user message it answers, and when that
    turn's first stream started (every stream of a turn is paced from it)."""

    user: str
    position: int
    stream: int
    started: float


def error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def text_of(content: Any) -> str:
    """Text of message content: a string, or parts (``text`` as a string or ``{value}``).
    A text part that is an inlined file (``attachments.inline_text``) is not the user's
    words: ``attachments_of`` names it."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                text = text.get("value", "") if isinstance(text, dict) else (text or "")
                if isinstance(text, str) and not (text.startswith("<file ") and parse_inline(text)):
                    parts.append(text)
        return "".join(parts)
    return ""


FileLookup = Callable[[str], "str | None"]
"""A file id → the SHA-256 of its bytes (None: no such file)."""


def _hash_url(url: Any) -> str | None:
    data = data_url_bytes(url) if isinstance(url, str) else None
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _by_id(file_id: Any, lookup: FileLookup) -> str:
    return lookup(str(file_id)) or f"unknown:{file_id}"


def attachments_of(content: Any, lookup: FileLookup, attached: Any = None) -> Context:
    """The attachments of one message's content, as context entries, in the forms each
    API takes: Responses ``input_image``/``input_file``, Chat ``image_url``/``file`` and
    inlined text files, Assistants ``image_file``/``image_url`` and the message's
    ``attachments`` (file ids for file_search or the code interpreter)."""
    out: Context = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "input_image":
            digest = _hash_url(part.get("image_url")) or (_by_id(part["file_id"], lookup) if part.get("file_id") else None)
            out.append(("image", digest or f"url:{part.get('image_url')}"))
        elif kind == "input_file":
            digest = _hash_url(part.get("file_data")) or (_by_id(part["file_id"], lookup) if part.get("file_id") else None)
            out.append(("file", digest or f"url:{part.get('file_url')}"))
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            out.append(("image", _hash_url(url) or f"url:{url}"))
        elif kind == "image_file":
            out.append(("image", _by_id((part.get("image_file") or {}).get("file_id"), lookup)))
        elif kind == "file":
            given = part.get("file") or {}
            digest = _hash_url(given.get("file_data")) or _by_id(given.get("file_id"), lookup)
            out.append(("file", digest))
        elif kind == "text" and isinstance(part.get("text"), str) and part["text"].startswith("<file "):
            inline = parse_inline(part["text"])
            if inline is not None:
                out.append(("file", hashlib.sha256(inline[2].encode("utf-8")).hexdigest()))
    for item in attached if isinstance(attached, list) else []:
        if isinstance(item, dict) and item.get("file_id"):
            out.append(("file", _by_id(item["file_id"], lookup)))
    return out


def message_context(role: str, content: Any, lookup: FileLookup, attached: Any = None) -> Context:
    """A user or assistant message as context entries: its text, then (a user's) its
    attachments. A message with neither is left out."""
    text = text_of(content)
    files = attachments_of(content, lookup, attached) if role == "user" else []
    return ([(role, text)] if text or files else []) + files


def attachments_after(context: Context) -> tuple[str, ...]:
    """The attachment entries that follow the last user message of a context."""
    users = [i for i, (role, _) in enumerate(context) if role == "user"]
    if not users:
        return ()
    out = []
    for role, value in context[users[-1] + 1 :]:
        if role not in ATTACHMENT_ROLES:
            break
        out.append(value)
    return tuple(out)


def turn_of(context: Context) -> tuple[str, int, int] | None:
    """The last user message of a context, its index among the user messages, and how
    many tool rounds (runs of tool outputs) follow it; None without a user message."""
    users = [i for i, (role, _) in enumerate(context) if role == "user"]
    if not users:
        return None
    last = users[-1]
    rounds = sum(
        1 for i in range(last + 1, len(context)) if context[i][0] == "tool_output" and context[i - 1][0] != "tool_output"
    )
    return context[last][1], len(users) - 1, rounds
