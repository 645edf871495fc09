"""What every backend shares: the interface, the raw-event stream, and error wording.

A backend has two halves. Its *driver* (``Backend.turn``) does the I/O of one user turn:
it opens one or more HTTP streams through the `openai` client and runs the tool loop.
Its *adapter* (an ``Adapter`` subclass) turns raw provider events into
``StreamEvent``s and touches no network, so recordings can exercise it directly.

Drivers read the SSE bytes themselves (through ``with_streaming_response``) rather than
the SDK's typed stream: the recorder must see every event verbatim, unknown ones
included; the adapter must see a stream's real end (``[DONE]`` or not) to tell a
complete answer from an interrupted one; and the SDK raises on some error events while
yielding others (see docs/architecture.md).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx2
import openai

from ..config import Config
from ..events import StreamEvent, TurnStatus
from ..sse import Api, RawEvent, SSEDecoder

MAX_TOOL_ROUNDS = 8
"""Tool-loop rounds one user turn may take before it ends with a notice."""


class Tap(Protocol):
    """Where the driver reports what it saw and did (the recorder, or nothing)."""

    def stream_started(self) -> None: ...

    def event(self, raw: RawEvent) -> None: ...

    def tool_output(self, call_id: str, output: str) -> None: ...


class NullTap:
    def stream_started(self) -> None:
        pass

    def event(self, raw: RawEvent) -> None:
        pass

    def tool_output(self, call_id: str, output: str) -> None:
        pass


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for, complete."""

    call_id: str
    name: str
    arguments: str


class ToolRunner(Protocol):
    """Runs a function call and returns the text sent back to the model."""

    def __call__(self, call: ToolCall) -> Awaitable[str]: ...


async def no_tools(call: ToolCall) -> str:
    return f"Error: no tool named {call.name!r} is available."


@dataclass
class TurnContext:
    """What a driver needs besides the user's message."""

    tap: Tap = field(default_factory=NullTap)
    run_tool: ToolRunner = no_tools
    max_rounds: int = MAX_TOOL_ROUNDS


@dataclass
class Mark:
    """Where the remote state stood when the page showed a given history: enough to
    bring it back there (see docs/architecture.md, "Conversation state")."""

    conversation_id: str | None = None
    items: int = 0
    """Responses: items in the conversation up to here."""
    response_id: str | None = None
    """Responses without the Conversations API: the response to continue from."""
    thread_id: str | None = None
    messages: int = 0
    """Assistants: messages in the thread up to here."""
    exchange: list[dict[str, Any]] = field(default_factory=list)
    """Chat: the turn's tool-call messages (assistant ``tool_calls`` and ``tool``), re-sent
    while the turn stays in the chat."""


@dataclass
class Conversation:
    """Per-browser-session remote state: thread, conversation or response chain, and
    which visible history each state answers."""

    thread_id: str | None = None
    conversation_id: str | None = None
    previous_response_id: str | None = None
    run_id: str | None = None
    """The run in flight (Assistants), so Stop can cancel it remotely."""
    items: int = 0
    """Responses: items in ``conversation_id`` now. Assistants: messages in the thread now."""
    head: str | None = None
    """Key (``history.history_key``) of the visible history the remote state holds now;
    None when unknown (a turn that did not complete)."""
    marks: dict[str, Mark] = field(default_factory=dict)
    """By key of a visible history: the remote state that matched it."""
    pending: Mark | None = None
    """The state after the turn in flight; ``settle`` files it under the answer's key."""
    recorded: dict[str, int] = field(default_factory=dict)
    """By key of a visible history: the recorded turn (recording or replay) whose answer
    it ends with, so each turn's ``parent`` is known."""
    chain_only: bool = False
    """Responses: the server has no Conversations API; chain ``previous_response_id``."""

    def settle(self, key: str | None) -> None:
        """The turn ended: ``key`` names the visible history with its answer (None when
        the turn did not complete: the remote state is then not trusted to match)."""
        if key is not None and self.pending is not None:
            self.marks[key] = self.pending
            self.head = key
        else:
            self.head = None
        self.pending = None


class Adapter:
    """Raw events of one HTTP stream → normalized events. Pure: no I/O.

    After the stream ends, ``status`` is the turn status the stream's terminal event
    gave (None when the stream ended without one: an interrupted answer), and
    ``calls`` holds the function calls the model asked for.
    """

    def __init__(self) -> None:
        self.status: TurnStatus | None = None
        self.message = ""
        self.calls: list[ToolCall] = []
        self._said_malformed = False

    def handle(self, raw: RawEvent) -> list[StreamEvent]:
        raise NotImplementedError

    def malformed(self, raw: RawEvent) -> list[StreamEvent]:
        """An event whose data is not a JSON object: skipped, and said once per stream."""
        if raw.is_done or self._said_malformed:
            return []
        self._said_malformed = True
        return [StreamEvent("notice", "The server sent an event that is not valid JSON; it was skipped.")]

    def finish(self, status: TurnStatus, message: str = "") -> None:
        if self.status is None:
            self.status, self.message = status, message


class Backend(ABC):
    """One API. Instances are shared by the sessions that use the same client."""

    api: ClassVar[Api]

    def __init__(self, client: openai.AsyncOpenAI, config: Config) -> None:
        self.client = client
        self.config = config

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Create what lives as long as the app (Assistants: the assistant)."""

    async def close(self) -> None:  # noqa: B027
        """Delete what ``start`` created."""

    async def end_session(self, conv: Conversation) -> None:  # noqa: B027
        """Delete the session's remote state (thread or conversation)."""

    async def cancel(self, conv: Conversation) -> None:  # noqa: B027
        """Cancel the remote run in flight, where the API allows."""

    @abstractmethod
    def turn(
        self, conv: Conversation, message: str, history: list[dict[str, Any]], ctx: TurnContext
    ) -> AsyncIterator[StreamEvent]:
        """Stream one user turn, tool loop included; the last event is a ``turn_end``."""


async def raw_events(request: Any, tap: Tap) -> AsyncIterator[RawEvent]:
    """Open one streaming request (a ``with_streaming_response`` call) and yield its events.

    Every event goes to the tap first, so the recording holds it even if the consumer
    stops right after.
    """
    async with request as response:
        tap.stream_started()
        decoder = SSEDecoder()
        async for chunk in response.http_response.aiter_bytes():
            for raw in decoder.feed(chunk):
                tap.event(raw)
                yield raw
        for raw in decoder.flush():
            tap.event(raw)
            yield raw


async def run_calls(calls: list[ToolCall], ctx: TurnContext, results: list[tuple[ToolCall, str]]) -> AsyncIterator[StreamEvent]:
    """Run a round of function calls: each output goes to the tap (recorded), to
    ``results`` (for the driver's next request) and to the UI, in the calls' order."""
    for call in calls:
        output = await ctx.run_tool(call)
        ctx.tap.tool_output(call.call_id, output)
        results.append((call, output))
        yield StreamEvent("tool_output", output, call_id=call.call_id)


def round_limit(ctx: TurnContext) -> list[StreamEvent]:
    """How a turn ends when the model keeps asking for tools past ``max_rounds``."""
    return [
        StreamEvent("notice", f"Stopped after {ctx.max_rounds} rounds of tool calls."),
        StreamEvent("turn_end", f"The tool loop hit its limit of {ctx.max_rounds} rounds.", status="incomplete"),
    ]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


_KEY_PATTERN = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*]{6,}")


def redact(text: str, secret: str | None = None) -> str:
    """Remove API keys (and a given secret) from text that may be shown or written."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return ""


def describe_error(exc: BaseException, *, has_text: bool) -> tuple[TurnStatus, str]:
    """A turn status and one line for the user, for an exception out of a driver."""
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        detail = _server_message(exc)
        if code == 401:
            line = "The API key was rejected (401). Check OPENAI_API_KEY."
        elif code == 403:
            line = "Access denied (403)."
        elif code == 404:
            line = "Not found (404): the model or endpoint does not exist on this server."
        elif code == 429:
            after = exc.response.headers.get("retry-after")
            wait = f" Try again in {after} s." if after else " Try again shortly."
            line = f"Rate limited or out of quota (429).{wait}"
        elif code >= 500:
            line = f"The server failed ({code}). Try again."
        else:
            line = f"The request was refused ({code})."
        if detail and code != 401:
            line = f"{line} {detail}"
        return ("interrupted" if has_text else "failed"), line
    if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
        return "interrupted", "The server went silent and the request timed out."
    if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
        return "interrupted", "The connection was lost before the answer finished."
    return ("interrupted" if has_text else "failed"), f"Unexpected error: {type(exc).__name__}: {exc}"


def error_message(data: Any) -> str:
    """The message of an error payload, flat (``{code, message}``) or nested (``{error: …}``)."""
    if isinstance(data, dict):
        nested = data.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else data
        message = inner.get("message") or inner.get("code")
        if message:
            code = inner.get("code")
            return f"{message} ({code})" if code and code != message else str(message)
    return "The server reported an error."
