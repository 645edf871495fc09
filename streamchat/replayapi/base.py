"""What the fake API's handlers share: the request and reply types, and the model's
context as the handlers compute it from their own state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..sse import Api, RawEvent

Context = list[tuple[str, str]]
"""What the model sees, in order: ``(role, text)`` with role ``user``, ``assistant``,
``tool_call`` (text: the function's name and arguments) or ``tool_output``.
Instructions and system messages are left out."""


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


@dataclass
class Logged:
    method: str
    path: str
    body: Any
    event: str = "request"
    """``request``, or ``disconnected`` when the client closed a stream before its end."""
    context: Context | None = None
    """For a streaming request: what the model saw (see ``Context``)."""


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
    """Text of message content: a string, or parts (``text`` as a string or ``{value}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                parts.append(text.get("value", "") if isinstance(text, dict) else (text or ""))
        return "".join(parts)
    return ""


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
