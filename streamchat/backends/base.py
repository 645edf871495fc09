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

import asyncio
import contextlib
import contextvars
import email.utils
import json
import random
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx2
import openai

from ..attachments import Attachment
from ..config import Config
from ..events import StreamEvent, TurnStatus
from ..redact import redact as redact  # the one policy; importable from here for now
from ..sse import Api, RawEvent, SSEDecoder

MAX_TOOL_ROUNDS = 8
OPENAI_HOST = "api.openai.com"
"""Tool-loop rounds one user turn may take before it ends with a notice."""


def sdk_names(union: Any, field: str) -> frozenset[str]:
    """The values of ``field`` (an event's ``type`` or name) across the members of one of
    the SDK's event unions: the events the installed SDK knows."""
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    return frozenset(value for model in typing.get_args(union) for value in typing.get_args(model.model_fields[field].annotation))


class Tap(Protocol):
    """Where the driver reports what it saw and did (the recorder, or nothing)."""

    def stream_started(self) -> None: ...

    def event(self, raw: RawEvent) -> None: ...

    def tool_output(self, call_id: str, output: str) -> None: ...

    def output_file(self, file_id: str, name: str, data: bytes) -> None:
        """A file a tool produced, as downloaded (replay serves it back from here)."""


class NullTap:
    def stream_started(self) -> None:
        pass

    def event(self, raw: RawEvent) -> None:
        pass

    def tool_output(self, call_id: str, output: str) -> None:
        pass

    def output_file(self, file_id: str, name: str, data: bytes) -> None:
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
    max_output_tokens: int | None = None
    """The answer's length cap, sent with each request (``Backend.token_cap``)."""
    attachments: tuple[Attachment, ...] = ()
    """The files of the user's message, checked (``attachments.inspect``): each driver
    sends them in its API's own form with the message."""
    outputs: Path | None = None
    """Where files that tools produce are saved once downloaded (the session's own
    temporary folder); None: not downloaded, only named."""


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
    uploads: dict[str, str] = field(default_factory=dict)
    """Files this session uploaded to the provider, by SHA-256: their file ids, deleted
    with the session (``end_session``), reused when the same file comes again."""
    vector_store_id: str | None = None
    """The session's own vector store (file_search over its uploads): created on the first
    document, deleted with the session."""

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
        self.damaged = 0
        """Events skipped because their data was not JSON (their text, if any, is lost)."""
        self.unknown: list[str] = []
        """Event types this adapter does not know: kept in the recording, skipped here."""
        self._shown: dict[Any, str] = {}
        """The text the deltas showed, by content part, to reconcile with the final text."""
        self._reconciled: set[Any] = set()

    def shown(self, key: Any, delta: str) -> None:
        self._shown[key] = self._shown.get(key, "") + delta

    def reconcile(self, key: Any, final: str, *, refusal: bool = False) -> list[StreamEvent]:
        """Make the part ``key`` show ``final``, the provider's own final text: a lost
        tail is appended; a damaged middle makes the part's text be replaced."""
        if key in self._reconciled:
            return []
        self._reconciled.add(key)
        shown = self._shown.get(key, "")
        self._shown[key] = final
        if final == shown:
            return []
        extra = {"refusal": True} if refusal else {}
        if final.startswith(shown):
            return [StreamEvent("text", final[len(shown) :], extra=extra)]
        return [StreamEvent("text_final", final, extra={**extra, "shown": shown})]

    def skip_unknown(self, kind: str) -> list[StreamEvent]:
        if kind not in self.unknown:
            self.unknown.append(kind)
        return []

    def handle(self, raw: RawEvent) -> list[StreamEvent]:
        raise NotImplementedError

    def malformed(self, raw: RawEvent) -> list[StreamEvent]:
        """An event whose data is not a JSON object: skipped, and said once per stream."""
        if raw.is_done:
            return []
        self.damaged += 1
        if self._said_malformed:
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

    def refuse(self, attachments: tuple[Attachment, ...]) -> str | None:
        """One line saying why this API cannot take these (checked) files, said in the
        chat before any request; None: it takes them all."""
        return None

    async def cancel(self, conv: Conversation) -> None:  # noqa: B027
        """Cancel the remote run in flight, where the API allows."""

    def token_cap(self, ctx: TurnContext) -> dict[str, int]:
        """Request parameters that cap the answer at ``ctx.max_output_tokens``, in this
        API's own name: Responses ``max_output_tokens``; Assistants runs and Chat
        Completions ``max_completion_tokens``. Chat also sends the older ``max_tokens``,
        which compatible servers (vLLM, Ollama, llama.cpp) read, but not to OpenAI
        itself, whose reasoning models refuse it."""
        limit = ctx.max_output_tokens
        if limit is None:
            return {}
        if self.api == "responses":
            return {"max_output_tokens": limit}
        if self.api == "chat" and self.client.base_url.host != OPENAI_HOST:
            return {"max_completion_tokens": limit, "max_tokens": limit}
        return {"max_completion_tokens": limit}

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


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return ""


def _refused_at(exc: BaseException) -> str | None:
    """``host:port`` when ``exc`` is a failure to connect (the SDK wraps httpx2's ConnectError)."""
    connect = exc if isinstance(exc, httpx2.ConnectError) else exc.__cause__
    if not isinstance(connect, httpx2.ConnectError):
        return None
    request = getattr(exc, "request", None)
    if request is None:
        try:
            request = connect.request
        except RuntimeError:
            return "the server"
    url = request.url
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.host}:{port}"


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
            after = retry_after(exc.response.headers)
            wait = f" Try again in {after:.0f} s." if after is not None else " Try again shortly."
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
        refused = _refused_at(exc)
        if refused is not None:  # nothing ever connected: nothing was lost
            return ("interrupted" if has_text else "failed"), f"Could not connect to {refused}: is the server running?"
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


# -- waiting before the first byte: visible and bounded ------------------------------

WaitReporter = Callable[[str], None]

WAIT_STATUS: contextvars.ContextVar[WaitReporter | None] = contextvars.ContextVar("streamchat_wait_status", default=None)
"""Where a turn wants its live waiting lines ("Rate limited: retrying in 20 s …"): set by
the session around a turn; the retry transport, which runs in the turn's task, reads it."""

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0


def retry_after(headers: httpx2.Headers) -> float | None:
    """Seconds a response asks to wait (``retry-after-ms``, or ``Retry-After`` in
    seconds or as an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        with contextlib.suppress(ValueError):
            return float(ms) / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _say(line: str) -> None:
    report = WAIT_STATUS.get()
    if report is not None:
        report(line)


class RetryingClient(httpx2.AsyncClient):
    """An HTTP client that retries a request that failed before its response began,
    saying so in the chat. The `openai` client runs on it with ``max_retries=0``.

    The SDK's own retries are silent and each attempt gets the whole read timeout
    (three 30 s timeouts and backoff: 91 s of nothing). Here the whole wait for a
    response's headers is bounded: the attempts share one read timeout, and the waits
    between them together at most one more (a ``Retry-After`` longer than the read
    timeout is not waited for at all: the 429 goes back at once and the chat says when
    to try again). Each wait is announced (``WAIT_STATUS``). ``sleep`` is injectable so
    tests need no real waiting. (A client subclass, not a transport, so the environment's
    proxy settings still apply.)
    """

    def __init__(
        self,
        *,
        retries: int,
        read_timeout: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("limits", httpx2.Limits(max_connections=1000, max_keepalive_connections=100))  # the SDK's
        kwargs.setdefault("follow_redirects", True)
        super().__init__(**kwargs)
        self.retries = retries
        self.read_timeout = read_timeout
        self.sleep = sleep
        self.jitter = jitter

    def _backoff(self, attempt: int) -> float:
        return min(INITIAL_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF) * (1 - 0.25 * self.jitter())

    async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        attempts = self.retries + 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout  # for the headers, all attempts together
        waited = 0.0  # between attempts, all waits together
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise httpx2.ReadTimeout("no response within the read timeout", request=request)
                async with asyncio.timeout(remaining):
                    response = await super().send(request, **kwargs)
            except TimeoutError:
                raise httpx2.ReadTimeout("no response within the read timeout", request=request) from None
            except httpx2.TimeoutException:
                raise  # the read timeout is spent: no budget is left for another attempt
            except httpx2.TransportError:
                wait = self._backoff(attempt)
                if last or waited + wait > self.read_timeout:
                    raise
                _say(f"Could not reach the server: retrying in {max(wait, 1):.0f} s (attempt {attempt + 1} of {attempts})…")
                waited += wait
                await self.sleep(wait)
                continue
            if last or not self._should_retry(response):
                return response
            asked = retry_after(response.headers)
            wait = asked if asked is not None and asked > 0 else self._backoff(attempt)
            if asked is not None and asked > self.read_timeout:
                return response  # too long to wait in silence: the turn ends saying when to try again
            if waited + wait > self.read_timeout:
                return response
            await response.aclose()
            what = "Rate limited" if response.status_code == 429 else f"The server answered {response.status_code}"
            _say(f"{what}: retrying in {max(wait, 1):.0f} s (attempt {attempt + 1} of {attempts})…")
            waited += wait
            await self.sleep(wait)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    @staticmethod
    def _should_retry(response: httpx2.Response) -> bool:
        told = response.headers.get("x-should-retry")
        if told in ("true", "false"):
            return told == "true"
        return response.status_code in RETRY_STATUSES or response.status_code >= 500
