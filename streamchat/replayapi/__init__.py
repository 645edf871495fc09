"""An OpenAI-compatible API, served from scripts (tests) or recordings (replay).

One request handler speaks the routes all three backends call, one module per API:
``responses`` (Responses and Conversations), ``assistants`` (assistants, threads,
messages, runs, tool outputs, cancel, delete) and ``chat`` (Chat Completions). Streams
are framed exactly as OpenAI frames them (``sse.frame``) and paced by their time
offsets. Two adaptors put it on the wire: ``ReplayTransport`` (in-process, for the app's
replay mode: the real `openai` client still makes every request) and ``asgi_app`` (real
HTTP on 127.0.0.1, for the tests' fake server and ``python -m streamchat.replay_server``).

The handlers keep server-side state as OpenAI does (conversation items appended by each
response, response chains, thread messages, and their deletion), work out from it what
the model sees for each streaming request (its ``Context``, logged for tests), and ask
the ``StreamSource`` what to send for that turn of that conversation (``TurnRequest``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..sse import Api, frame_raw
from .base import (
    ATTACHMENT_ROLES,
    Context,
    Logged,
    Reply,
    Script,
    StreamDropped,
    StreamSource,
    Turn,
    TurnRequest,
    attachments_after,
    error,
)

__all__ = [
    "ATTACHMENT_ROLES",
    "Context",
    "Logged",
    "ReplayAPI",
    "Reply",
    "Script",
    "StreamDropped",
    "StreamSource",
    "TurnRequest",
]

FAST_CHUNK = 64
"""At speed 0, frames sent per chunk (one write, one read for the client): per-chunk
costs in the HTTP layers, not the frames, were most of a fast replay's time."""
HOLD_POLL = 0.05
"""Seconds between checks while an event is held past its first wait (a paused clock)."""
HOLD_SLACK = 0.005
"""An event this close to its time is sent (a sleep may wake a hair early)."""


class ReplayAPI:
    """The request handler. ``log`` records every request, for tests to assert on;
    ``contexts`` what the model saw for each streaming request, in order."""

    def __init__(
        self,
        source: StreamSource,
        *,
        speed: float = 0.0,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from .assistants import AssistantsHandler
        from .chat import ChatHandler
        from .files import FilesHandler
        from .responses import ResponsesHandler

        self.source = source
        self.speed = speed
        self.api_key = api_key
        """When set, requests without ``Authorization: Bearer <api_key>`` get a 401."""
        self.clock = clock
        self.log: deque[Logged] = deque(maxlen=1000)  # rings: a server's memory stays bounded
        self.contexts: deque[Context] = deque(maxlen=1000)
        self.objects: dict[str, dict[str, Any]] = {}
        """Every object the API created and has not deleted, by id (as the API returns it)."""
        self._ids = itertools.count(1)
        self.responses = ResponsesHandler(self)
        self.assistants = AssistantsHandler(self)
        self.chat = ChatHandler(self)
        self.files = FilesHandler(self)

    # -- helpers ------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
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

    def create(self, kind: str, prefix: str, **fields: Any) -> dict[str, Any]:
        obj = {"id": self.new_id(prefix), "object": kind, "created_at": int(time.time()), "metadata": {}, **fields}
        self.objects[obj["id"]] = obj
        return obj

    def delete(self, object_id: str, kind: str) -> Reply:
        obj = self.objects.get(object_id)
        if obj is None or obj.get("object") != kind:
            return error(404, f"No {kind} found with id '{object_id}'.", "not_found")
        del self.objects[object_id]
        return Reply(200, {"id": object_id, "object": f"{kind}.deleted", "deleted": True})

    # -- routing ------------------------------------------------------------------

    async def handle(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Reply:
        """Answer one request; ``path`` may end in ``?query`` (list routes read it)."""
        path, _, raw_query = path.partition("?")
        query = dict(urllib.parse.parse_qsl(raw_query))
        path = "/" + path.strip("/")
        if path.startswith("/v1/"):
            path = path[3:]
        self.log.append(Logged(method, path, body))
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "Incorrect API key provided.", "invalid_api_key")
        parts = path.strip("/").split("/")
        body = body if isinstance(body, dict) else {}
        try:
            reply = await self._route(method, parts, body, query)
        except KeyError as exc:
            return error(400, f"Missing field {exc}.", "missing_field")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return reply

    async def _route(self, method: str, parts: list[str], body: dict[str, Any], query: dict[str, str]) -> Reply:
        head = parts[0]
        if method == "GET" and parts == ["models"]:
            return Reply(200, {"object": "list", "data": [{"id": "replay", "object": "model", "owned_by": "streamchat"}]})
        if head == "chat":
            reply = self.chat.route(method, parts, body)
        elif head in ("responses", "conversations"):
            reply = self.responses.route(method, parts, body, query)
        elif head in ("assistants", "threads"):
            reply = self.assistants.route(method, parts, body, query)
        elif head in ("files", "vector_stores", "containers"):
            reply = self.files.route(method, parts, body, query)
        else:
            reply = None
        return reply or error(404, f"Unknown route {method} /{'/'.join(parts)}.", "unknown_url")

    # -- streaming ----------------------------------------------------------------

    def lookup(self, file_id: str) -> str | None:
        """The SHA-256 of an uploaded file's bytes (handlers name attachments by it)."""
        return self.files.sha256(file_id)

    def script(
        self, api: Api, turn: Turn, body: dict[str, Any], context: Context, stores: list[str] | None = None
    ) -> Script | Reply:
        """Log what the model sees (and the vector stores it may search) and ask the
        source what to send; a Reply is an error."""
        if body.get("stream") is not True:
            return error(400, "This server answers streaming requests only (stream: true).", "stream_required")
        self.contexts.append(list(context))
        searchable = {s: self.files.store_files(s) for s in stores} if stores else None
        for entry in reversed(self.log):
            if entry.event == "request":
                entry.context = list(context)
                entry.stores = searchable
                break
        reachable = tuple(dict.fromkeys(sha for files in (searchable or {}).values() for sha in files))
        request = TurnRequest(
            api, turn.user, turn.position, turn.stream, body, tuple(context), attachments_after(context), reachable
        )
        script = self.source(request)
        if script.status != 200:
            err = script.error or {"message": "Error.", "type": "server_error", "code": None}
            return Reply(script.status, {"error": err}, headers=script.headers, delay=self._delay(script))
        return script

    def serve(self, script: Script, started: float) -> Reply:
        for file_id, (name, data) in script.files.items():  # what its tools made, for download
            self.files.produced(file_id, name, data)
        headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", **script.headers}
        return Reply(200, stream=self._paced(script, started), headers=headers, delay=self._delay(script))

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
            # A clock that stood still (demo mode's Pause), or a lower speed: not due yet.
            while self.speed > 0 and started + t / self.speed - self.clock() > HOLD_SLACK:
                await asyncio.sleep(HOLD_POLL)
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
