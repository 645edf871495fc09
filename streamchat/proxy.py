"""A recording proxy: any OpenAI client, in any language, recorded by pointing its base
URL here.

Every request is forwarded to an upstream OpenAI-compatible base URL (httpx2) and its
response streamed back chunk by chunk as it arrives (nothing is buffered), while each
streamed turn is written to a recording in a folder, one file per conversation. A
conversation is followed as the API keeps it: a Conversations id, an Assistants thread,
a ``previous_response_id`` chain, or (Chat Completions, stateless) the chat history the
client sends again with each request.

    python -m streamchat.replay_server DIR --record --upstream URL

The files are ordinary recordings (``recording.RecordingWriter``: the key the proxy
sends upstream is scrubbed, no header is written), so the same command without
``--record`` replays DIR. The pytest plugin records through this proxy too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from .backends.assistants import AssistantsAdapter
from .backends.base import Adapter
from .backends.chat import ChatAdapter
from .backends.responses import ResponsesAdapter
from .events import TurnStatus
from .recording import RecordingWriter, header, new_recording_path
from .replayapi.base import text_of
from .serve import RunningServer, read_body, serve_asgi
from .sse import Api, SSEDecoder

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

DEFAULT_UPSTREAM = "https://api.openai.com/v1"

# Hop-by-hop headers and those that describe the body as the proxy does not send it.
_DROP_REQUEST = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding", "te"})
_DROP_RESPONSE = frozenset({"content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive"})


def _adapter(api: Api) -> Adapter:
    if api == "responses":
        return ResponsesAdapter()
    if api == "assistants":
        return AssistantsAdapter()
    return ChatAdapter()


@dataclass
class RecordedTurnInfo:
    """What the recording file does not hold but the pytest plugin's matching needs."""

    seq: int
    """Order in which the proxy saw the turn begin, over all conversations."""
    position: int
    """The turn's index in its conversation (what a replay server computes)."""
    model: str | None


@dataclass
class Conversation:
    """One conversation's recording: a writer opened at its first turn."""

    api: Api
    writer: RecordingWriter | None = None
    turns: list[RecordedTurnInfo] = field(default_factory=list)
    pending_user: str | None = None
    """Assistants: the last user message added to the thread, answered by the next run."""
    open_status: TurnStatus | None = None
    """The status of a turn that asked for tools and waits for their outputs."""
    base_position: int = 0
    """Chat: a history that starts mid-conversation (first seen with earlier turns)."""


@dataclass(frozen=True)
class StreamStart:
    """A streaming request placed in its conversation."""

    conversation: Conversation
    user: str | None
    """The user message of a new turn; None when the request continues the open turn."""
    tool_outputs: list[tuple[str, str]]
    model: str | None
    chat_key: tuple[str, ...] | None = None


class Recorder:
    """Splits the proxied traffic into conversations and writes each one's turns.

    Only streamed answers (status 200, ``text/event-stream``) are recorded: a recording
    holds streams. Errors are forwarded but not recorded, so a replay never serves a
    failure that happened while recording.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conversations: list[Conversation] = []
        self._by_id: dict[str, Conversation] = {}  # conversation, thread and response ids
        self._by_history: dict[tuple[str, ...], Conversation] = {}  # chat: user messages so far
        self._seq = itertools.count()
        self.closed = False
        """Set by ``close``: later streams are still forwarded, no longer recorded."""

    @property
    def paths(self) -> list[Path]:
        return [c.writer.path for c in self.conversations if c.writer is not None]

    def _new(self, api: Api) -> Conversation:
        conversation = Conversation(api)
        self.conversations.append(conversation)
        return conversation

    # -- requests that create state ------------------------------------------------

    def created(self, method: str, parts: list[str], body: dict[str, Any], reply: Any) -> None:
        """Note the ids a non-streaming answer created (a conversation, a thread) and
        the user messages added to a thread."""
        if method != "POST" or not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
            return
        if parts == ["conversations"]:
            self._by_id[reply["id"]] = self._new("responses")
        elif parts == ["threads"]:
            conversation = self._new("assistants")
            users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role", "user") == "user"]
            if users:
                conversation.pending_user = text_of(users[-1].get("content"))
            self._by_id[reply["id"]] = conversation
        elif len(parts) == 3 and parts[0] == "threads" and parts[2] == "messages" and body.get("role", "user") == "user":
            thread = self._by_id.get(parts[1])
            if thread is not None:
                thread.pending_user = text_of(body.get("content"))

    # -- streaming requests ------------------------------------------------------------

    def place(self, api: Api, parts: list[str], body: dict[str, Any]) -> StreamStart | None:
        """Where a streaming request belongs; None for a request no recording holds."""
        model = body.get("model") if isinstance(body.get("model"), str) else None
        if api == "chat":
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
            users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
            if not users:
                return None
            texts = tuple(text_of(messages[i].get("content")) for i in users)
            after = messages[users[-1] + 1 :]
            if any(m.get("role") == "assistant" and m.get("tool_calls") for m in after):
                outputs = [(str(m.get("tool_call_id", "")), text_of(m.get("content"))) for m in after if m.get("role") == "tool"]
                conversation = self._by_history.get(texts)
                if conversation is not None:
                    return StreamStart(conversation, None, outputs, model)
            conversation = self._by_history.get(texts[:-1]) if len(texts) > 1 else None
            if conversation is None:
                conversation = self._new("chat")
                conversation.base_position = len(texts) - 1
            return StreamStart(conversation, texts[-1], [], model, chat_key=texts)
        if api == "responses":
            items = body.get("input")
            user: str | None = None
            outputs = []
            if isinstance(items, str):
                user = items
            elif isinstance(items, list):
                users_items = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
                if users_items:
                    user = text_of(users_items[-1].get("content"))
                outputs = [
                    (str(i.get("call_id", "")), str(i.get("output", "")))
                    for i in items
                    if isinstance(i, dict) and i.get("type") == "function_call_output"
                ]
            ref = body.get("conversation")
            if isinstance(ref, dict):
                ref = ref.get("id")
            ref = ref or body.get("previous_response_id")
            conversation = self._by_id.get(ref) if isinstance(ref, str) else None
            if conversation is None:
                conversation = self._new("responses")
                if isinstance(ref, str):
                    self._by_id[ref] = conversation
            return StreamStart(conversation, user, outputs, model)
        # assistants: runs (a new turn) and submit_tool_outputs (the open turn goes on)
        conversation = self._by_id.get(parts[1])
        if conversation is None:
            conversation = self._new("assistants")
            self._by_id[parts[1]] = conversation
        if parts[-1] == "submit_tool_outputs":
            outputs = [
                (str(o.get("tool_call_id", "")), str(o.get("output", "")))
                for o in body.get("tool_outputs") or []
                if isinstance(o, dict)
            ]
            return StreamStart(conversation, None, outputs, model)
        user, conversation.pending_user = conversation.pending_user or "", None
        return StreamStart(conversation, user, [], model)

    def begin(self, start: StreamStart, secret: str | None) -> RecordingWriter | None:
        """The stream's answer is starting: open its turn (or go on with the open one)."""
        if self.closed:
            return None
        conversation = start.conversation
        if start.user is None and conversation.open_status is not None and conversation.writer is not None:
            writer = conversation.writer
            for call_id, output in start.tool_outputs:
                writer.tool_output(call_id, output)
            conversation.open_status = None
            writer.stream_started()
            return writer
        self.finish_open(conversation)
        if conversation.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            head = header(conversation.api, start.model or "", "", recorder="streamchat.proxy")
            head["config_sha256"] = None  # no assistant config: the client made every request
            path = new_recording_path(self.folder, conversation.api)
            conversation.writer = RecordingWriter(path, head, secret=secret)
        writer = conversation.writer
        position = conversation.base_position + len(conversation.turns)
        conversation.turns.append(RecordedTurnInfo(next(self._seq), position, start.model))
        writer.begin_turn(start.user or "")
        writer.stream_started()
        if start.chat_key is not None:
            self._by_history[start.chat_key] = conversation
        return writer

    def response_id(self, start: StreamStart, response_id: str) -> None:
        """A Responses stream named its response: a ``previous_response_id`` continues here."""
        self._by_id.setdefault(response_id, start.conversation)

    def ended(self, start: StreamStart, status: TurnStatus, wants_tools: bool) -> None:
        conversation = start.conversation
        if conversation.writer is None or self.closed:
            return
        if wants_tools and status == "completed":
            conversation.open_status = status  # the client will send the tools' outputs
        else:
            conversation.writer.end_turn(status)

    def finish_open(self, conversation: Conversation) -> None:
        if conversation.open_status is not None and conversation.writer is not None:
            conversation.writer.end_turn(conversation.open_status)
        conversation.open_status = None

    def close(self) -> None:
        self.closed = True
        for conversation in self.conversations:
            self.finish_open(conversation)
            if conversation.writer is not None:
                conversation.writer.close()


def _stream_api(method: str, parts: list[str]) -> Api | None:
    """The API of a request that may stream an answer, from its route."""
    if method != "POST":
        return None
    if parts == ["chat", "completions"]:
        return "chat"
    if parts == ["responses"]:
        return "responses"
    if len(parts) == 3 and parts[0] == "threads" and parts[2] == "runs":
        return "assistants"
    if len(parts) == 5 and parts[0] == "threads" and parts[2] == "runs" and parts[4] == "submit_tool_outputs":
        return "assistants"
    return None


class Proxy:
    """The forwarding ASGI app. ``api_key``, when given, replaces whatever key the client
    sends (so a client can hold a dummy one); otherwise the client's ``Authorization``
    goes upstream as it came. Either way the key sent upstream is scrubbed from the
    recording."""

    def __init__(self, upstream: str, recorder: Recorder | None, *, api_key: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.recorder = recorder
        self.api_key = api_key or None
        self._client: httpx2.AsyncClient | None = None

    def _http(self) -> httpx2.AsyncClient:
        # Created in the serving loop, on first use: an AsyncClient belongs to one loop.
        if self._client is None:
            timeout = httpx2.Timeout(connect=10.0, read=None, write=60.0, pool=60.0)
            self._client = httpx2.AsyncClient(timeout=timeout, follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.recorder is not None:
            self.recorder.close()

    def _url(self, path: str, query: bytes) -> str:
        # The client's base URL ends in /v1 like the upstream's: the path after it is joined.
        if path == "/v1" or path.startswith("/v1/"):
            path = path[3:]
        url = self.upstream + path
        return url + ("?" + query.decode("latin-1") if query else "")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        await self.forward(scope, raw, receive, send)

    async def forward(self, scope: dict[str, Any], raw: bytes, receive: Receive, send: Send) -> None:
        """Forward one request whose body has been read, and stream its answer back."""
        method: str = scope["method"]
        path: str = scope["path"]
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in _DROP_REQUEST
        ]
        secret = self.api_key
        if self.api_key is not None:
            headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
            headers.append(("authorization", f"Bearer {self.api_key}"))
        else:
            auth = next((v for k, v in headers if k.lower() == "authorization"), "")
            secret = auth.removeprefix("Bearer ").strip() or None
        headers.append(("accept-encoding", "identity"))
        parts = path.removeprefix("/v1").strip("/").split("/")
        body: Any = None
        if raw:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        body = body if isinstance(body, dict) else {}

        start: StreamStart | None = None
        api = _stream_api(method, parts)
        if self.recorder is not None and api is not None and body.get("stream") is True:
            start = self.recorder.place(api, parts, body)

        request = self._http().build_request(
            method, self._url(path, scope.get("query_string", b"")), headers=headers, content=raw
        )
        try:
            response = await self._http().send(request, stream=True)
        except httpx2.HTTPError as exc:
            payload = json.dumps({"error": {"message": f"upstream unreachable: {exc}", "type": "proxy_error", "code": None}})
            await send({"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": payload.encode()})
            return
        out_headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items() if k.lower() not in _DROP_RESPONSE
        ]
        streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        writer = None
        if start is not None and response.status_code == 200 and streaming and self.recorder is not None:
            writer = self.recorder.begin(start, secret)
        await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})

        adapter = _adapter(api) if writer is not None and api is not None else None
        decoder = SSEDecoder()
        kept = bytearray()  # a small JSON answer, read for the ids it creates

        def tap(chunk: bytes) -> None:
            if writer is not None and adapter is not None and start is not None:
                if self.recorder is not None and self.recorder.closed:
                    return  # the recording was closed under a stream still running
                for event in decoder.feed(chunk) if chunk else decoder.flush():
                    writer.event(event)
                    adapter.handle(event)
                    data = event.data
                    if isinstance(data, dict) and isinstance(data.get("response"), dict):
                        response_id = data["response"].get("id")
                        if isinstance(response_id, str):
                            assert self.recorder is not None
                            self.recorder.response_id(start, response_id)
            elif not streaming and len(kept) < 1 << 20:
                kept.extend(chunk)

        async def relay() -> None:
            async for chunk in response.aiter_bytes():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                tap(chunk)
            tap(b"")
            await send({"type": "http.response.body", "body": b""})

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        status: TurnStatus = "interrupted"
        relaying, watching = asyncio.ensure_future(relay()), asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait({relaying, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not relaying.done():
                status = "cancelled"  # the client left: stop reading upstream at once
                relaying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relaying
            await response.aclose()
            error = relaying.exception() if relaying.done() and not relaying.cancelled() else None
            if adapter is not None and start is not None and self.recorder is not None:
                if status != "cancelled":
                    status = adapter.status if error is None and adapter.status is not None else "interrupted"
                self.recorder.ended(start, status, bool(adapter.calls))
        if error is not None:
            raise error  # an upstream cut mid-body: uvicorn cuts the client's connection too
        if self.recorder is not None and response.status_code == 200 and not streaming and kept:
            with contextlib.suppress(ValueError):
                self.recorder.created(method, parts, body, json.loads(bytes(kept)))


ServedApp = RunningServer
"""A served proxy: its ``url`` and ``stop()``."""


def serve_app(app: ASGIApp, *, port: int = 0) -> RunningServer:
    """Serve an ASGI app on 127.0.0.1 from a background thread; returns once it accepts
    connections (lifespan on, so the proxy closes its files when the server stops)."""
    return serve_asgi(app, port=port, lifespan="on")


def upstream_from_env() -> str:
    return os.environ.get("OPENAI_BASE_URL") or DEFAULT_UPSTREAM
