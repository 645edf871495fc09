"""An OpenAI-compatible API, served from scripts (tests) or recordings (replay).

One request handler speaks the routes all three backends call: Responses and
Conversations, Assistants (assistants, threads, messages, runs, tool outputs, cancel,
delete) and Chat Completions. Streams are framed exactly as OpenAI frames them
(``sse.frame``) and paced by their time offsets. Two adaptors put it on the wire:
``ReplayTransport`` (in-process, for the app's replay mode: the real `openai` client
still makes every request) and ``asgi_app`` (real HTTP on 127.0.0.1, for the tests'
fake server and ``python -m streamchat.replay_server``).

The handler works out, for each streaming request, which turn of which conversation it
continues (``TurnRequest``) and asks its ``StreamSource`` what to send.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .sse import Api, RawEvent, frame_raw

FAST_CHUNK = 64
"""At speed 0, frames sent per chunk (one write, one read for the client): per-chunk
costs in the HTTP layers, not the frames, were most of a fast replay's time."""


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
    """The user message this turn answers."""
    position: int
    """The turn's index in its conversation (0 for the first user message)."""
    stream: int
    """The stream's index within the turn (tool loops open several)."""
    body: dict[str, Any]


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


@dataclass
class _Chain:
    turn: int = -1
    stream: int = 0
    user: str = ""
    started: float = 0.0


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                parts.append(text.get("value", "") if isinstance(text, dict) else (text or ""))
        return "".join(parts)
    return ""


class ReplayAPI:
    """The request handler. ``log`` records every request, for tests to assert on."""

    def __init__(
        self,
        source: StreamSource,
        *,
        speed: float = 0.0,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.speed = speed
        self.api_key = api_key
        """When set, requests without ``Authorization: Bearer <api_key>`` get a 401."""
        self.clock = clock
        self.log: list[Logged] = []
        self.objects: dict[str, dict[str, Any]] = {}
        self._chains: dict[str, _Chain] = {}
        self._chat_starts: OrderedDict[str, float] = OrderedDict()
        self._ids = itertools.count(1)

    # -- helpers ------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):05d}"

    def requests(self, method: str | None = None, path_contains: str = "") -> list[Logged]:
        return [
            r for r in self.log if r.event == "request" and (method is None or r.method == method) and path_contains in r.path
        ]

    def disconnects(self) -> list[Logged]:
        return [r for r in self.log if r.event == "disconnected"]

    def live_objects(self, kind: str) -> list[str]:
        """Ids of objects of a kind (thread, conversation, assistant) not deleted yet."""
        return [k for k, v in self.objects.items() if v.get("object") == kind]

    def _create(self, kind: str, prefix: str, **fields: Any) -> dict[str, Any]:
        obj = {"id": self._id(prefix), "object": kind, "created_at": int(time.time()), "metadata": {}, **fields}
        self.objects[obj["id"]] = obj
        return obj

    def _delete(self, object_id: str, kind: str) -> Reply:
        obj = self.objects.get(object_id)
        if obj is None or obj.get("object") != kind:
            return _error(404, f"No {kind} found with id '{object_id}'.", "not_found")
        del self.objects[object_id]
        self._chains.pop(object_id, None)
        return Reply(200, {"id": object_id, "object": f"{kind}.deleted", "deleted": True})

    # -- routing ------------------------------------------------------------------

    async def handle(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Reply:
        path = "/" + path.strip("/")
        if path.startswith("/v1/"):
            path = path[3:]
        self.log.append(Logged(method, path, body))
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        parts = path.strip("/").split("/")
        body = body if isinstance(body, dict) else {}
        try:
            reply = await self._route(method, parts, body)
        except KeyError as exc:
            return _error(400, f"Missing field {exc}.", "missing_field")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return reply

    async def _route(self, method: str, parts: list[str], body: dict[str, Any]) -> Reply:
        n = len(parts)
        head = parts[0]
        if method == "GET" and parts == ["models"]:
            return Reply(200, {"object": "list", "data": [{"id": "replay", "object": "model", "owned_by": "streamchat"}]})
        if method == "POST" and parts == ["chat", "completions"]:
            return self._chat(body)
        if head == "responses" and method == "POST" and n == 1:
            return self._responses(body)
        if head == "conversations":
            if method == "POST" and n == 1:
                conversation = self._create("conversation", "conv")
                self._chains[conversation["id"]] = _Chain()
                return Reply(200, conversation)
            if method == "DELETE" and n == 2:
                return self._delete(parts[1], "conversation")
        if head == "assistants":
            if method == "POST" and n == 1:
                fields = {k: body.get(k) for k in ("name", "model", "instructions", "tools", "temperature")}
                fields["tools"] = fields["tools"] or []
                return Reply(200, self._create("assistant", "asst", **fields))
            if method == "DELETE" and n == 2:
                return self._delete(parts[1], "assistant")
        if head == "threads":
            return self._threads(method, parts, body)
        return _error(404, f"Unknown route {method} /{'/'.join(parts)}.", "unknown_url")

    def _threads(self, method: str, parts: list[str], body: dict[str, Any]) -> Reply:
        n = len(parts)
        if method == "POST" and n == 1:
            thread = self._create("thread", "thread", tool_resources=None)
            self._chains[thread["id"]] = _Chain()
            return Reply(200, thread)
        thread_id = parts[1]
        if thread_id not in self.objects:
            return _error(404, f"No thread found with id '{thread_id}'.", "not_found")
        if method == "DELETE" and n == 2:
            return self._delete(thread_id, "thread")
        chain = self._chains.setdefault(thread_id, _Chain())
        if method == "POST" and n == 3 and parts[2] == "messages":
            text = _text_of(body.get("content"))
            if body.get("role", "user") == "user":
                chain.turn, chain.stream, chain.user = chain.turn + 1, 0, text
            content = [{"type": "text", "text": {"value": text, "annotations": []}}]
            message = self._create(
                "thread.message", "msg", thread_id=thread_id, role=body.get("role", "user"), content=content, status="completed"
            )
            return Reply(200, message)
        if method == "POST" and n == 3 and parts[2] == "runs":
            if chain.turn < 0:
                return _error(400, "The thread has no user message to answer.", "no_message")
            chain.stream, chain.started = 0, self.clock()
            return self._stream("assistants", chain, body)
        if method == "POST" and n == 5 and parts[2] == "runs" and parts[4] == "submit_tool_outputs":
            chain.stream += 1
            return self._stream("assistants", chain, body)
        if method == "POST" and n == 5 and parts[2] == "runs" and parts[4] == "cancel":
            run = {
                "id": parts[3],
                "object": "thread.run",
                "thread_id": thread_id,
                "status": "cancelling",
                "created_at": int(time.time()),
            }
            return Reply(200, run)
        return _error(404, f"Unknown route {method} /{'/'.join(parts)}.", "unknown_url")

    def _responses(self, body: dict[str, Any]) -> Reply:
        items = body.get("input")
        user = None
        if isinstance(items, str):
            user = items
        elif isinstance(items, list):
            users = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
            if users:
                user = _text_of(users[-1].get("content"))
        conversation = body.get("conversation")
        if isinstance(conversation, dict):
            conversation = conversation.get("id")
        previous = body.get("previous_response_id")
        if conversation:
            if conversation not in self.objects:
                return _error(404, f"Conversation with id '{conversation}' not found.", "not_found")
            chain = self._chains.setdefault(conversation, _Chain())
        elif previous:
            if previous not in self._chains:
                return _error(404, f"Previous response with id '{previous}' not found.", "not_found")
            chain = copy.copy(self._chains[previous])  # a response chain can fork
        else:
            chain = _Chain()
        if user is not None:
            chain.turn, chain.stream, chain.user, chain.started = chain.turn + 1, 0, user, self.clock()
        elif chain.turn < 0:
            return _error(400, "No user message and no earlier response to continue.", "no_message")
        else:
            chain.stream += 1
        return self._stream("responses", chain, body)

    def _chat(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return _error(400, "messages: expected a list.", "invalid_value")
        user_at = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
        if not user_at:
            return _error(400, "messages: no user message.", "invalid_value")
        last = user_at[-1]
        after = messages[last + 1 :]
        stream = sum(1 for m in after if isinstance(m, dict) and m.get("role") == "assistant" and m.get("tool_calls"))
        # The turn's start time, found again on its later (tool-loop) requests.
        key = hashlib.sha256(json.dumps(messages[: last + 1], sort_keys=True, default=str).encode()).hexdigest()
        if stream == 0 or key not in self._chat_starts:
            self._chat_starts[key] = self.clock()
            while len(self._chat_starts) > 4096:
                self._chat_starts.popitem(last=False)
        chain = _Chain(
            turn=len(user_at) - 1, stream=stream, user=_text_of(messages[last].get("content")), started=self._chat_starts[key]
        )
        return self._stream("chat", chain, body)

    # -- streaming ----------------------------------------------------------------

    def _stream(self, api: Api, chain: _Chain, body: dict[str, Any]) -> Reply:
        if body.get("stream") is not True:
            return _error(400, "This server answers streaming requests only (stream: true).", "stream_required")
        script = self.source(TurnRequest(api, chain.user, chain.turn, chain.stream, body))
        if script.status != 200:
            error = script.error or {"message": "Error.", "type": "server_error", "code": None}
            return Reply(script.status, {"error": error}, headers=script.headers, delay=self._delay(script))
        if api == "responses":
            script = self._fresh_response_ids(script, chain)
        headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", **script.headers}
        return Reply(200, stream=self._paced(script, chain.started), headers=headers, delay=self._delay(script))

    def _fresh_response_ids(self, script: Script, chain: _Chain) -> Script:
        """Give each served response a new id and remember its conversation, so
        ``previous_response_id`` finds the chain even when two clients replay the same
        recording at once."""
        new_id = self._id("resp")
        self._chains[new_id] = chain
        events = list(script.events)  # the few events that carry the response are replaced; the rest stay as they are
        for i, (t, raw) in enumerate(events):
            data = raw.data
            if isinstance(data, dict) and "response" in data and isinstance(data["response"], dict):
                events[i] = (t, RawEvent(raw.event, {**data, "response": {**data["response"], "id": new_id}}))
        return replace(script, events=events)

    def _delay(self, script: Script) -> float:
        """Seconds before the response starts (a fault-injecting subclass holds headers)."""
        return 0.0

    async def _wait_until(self, started: float, t: float, n: int) -> None:
        """Pace event ``n`` (offset ``t``) at ``speed``; speed 0 never waits, but yields
        to the loop now and then, or an in-process replay would hold it (every other
        session, and this turn's UI) until its end."""
        if self.speed > 0:
            delay = started + t / self.speed - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
        elif n % 64 == 63:
            await asyncio.sleep(0)

    async def _paced(self, script: Script, started: float) -> AsyncIterator[bytes]:
        events, n = script.events, 0
        while n < len(events):
            if self.speed > 0:
                t, raw = events[n]
                await self._wait_until(started, t, n)
                yield frame_raw(raw)
                n += 1
            else:  # as fast as possible: frames go in chunks, the loop gets a turn between
                if n:
                    await asyncio.sleep(0)
                chunk = events[n : n + FAST_CHUNK]
                yield b"".join([frame_raw(raw) for _, raw in chunk])
                n += len(chunk)
