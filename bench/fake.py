"""The benchmark's fake OpenAI server: scripted replies chosen by the user's message, and
a clock on what the server did (first and last delta sent, connection closed by the
client), so browser timings can be measured from the server's side of the wire.

A benchmark message reads ``bench id=7 n=4000 rate=0 ...``; the reply is built for
whichever API asked (responses, assistants or chat), so every peer and every backend
receives the same text in its own wire format.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from streamchat.replayapi import Script, TurnRequest
from streamchat.serve import RunningServer, asgi_app, serve_in_thread
from streamchat.sse import RawEvent
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript, FaultyAPI

BUILDERS: dict[str, Callable[..., list[RawEvent]]] = {
    "responses": synth.responses_stream,
    "assistants": synth.assistants_stream,
    "chat": synth.chat_stream,
}

_WORDS = [
    "stream",
    "delta",
    "token",
    "reply",
    "server",
    "browser",
    "gradio",
    "chunk",
    "event",
    "render",
    "latency",
    "frame",
    "queue",
    "socket",
    "buffer",
    "paint",
    "markdown",
    "answer",
    "model",
    "session",
    "replay",
]


def reply_deltas(n: int, size: int = 5, *, rid: str = "0000") -> list[str]:
    """``n`` deltas of ``size`` characters of plain prose (paragraphs every ~400
    characters); the first delta is ``A<rid>`` and the last ``Z<rid>``, unique marks the
    browser can look for. With ``size=5`` and ``n=4000``: a 20,000-character reply."""
    words = itertools.cycle(_WORDS)
    text: list[str] = []
    length, para = 0, 0
    total = n * size
    while length < total:
        word = next(words)
        sep = "\n\n" if para > 400 else " "
        para = 0 if sep == "\n\n" else para + len(word) + 1
        text.append(word + sep)
        length += len(word) + len(sep)
    body = "".join(text)[: total - 2 * size]
    deltas = [body[i : i + size] for i in range(0, len(body), size)]
    mark = rid[-(size - 1) :].rjust(size - 1, "0")
    return [f"A{mark}", *deltas, f"Z{mark}"][:n] if n >= 2 else [f"A{mark}"]


def marks(rid: str, size: int = 5) -> tuple[str, str]:
    mark = rid[-(size - 1) :].rjust(size - 1, "0")
    return f"A{mark}", f"Z{mark}"


def bench_message(rid: str | int, **params: Any) -> str:
    return "bench " + " ".join(f"{k}={v}" for k, v in {"id": rid, **params}.items())


def parse_message(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", text))


@dataclass
class Stamps:
    """What the server did for one benchmark run (``time.time()`` seconds)."""

    requested: float | None = None
    first_delta: float | None = None
    last_delta: float | None = None
    ended: float | None = None
    disconnected: float | None = None
    sent: int = 0
    """Frames sent on the run's stream."""


@dataclass
class BenchScript(FaultScript):
    run: str = ""
    first_index: int = -1
    last_index: int = -1


@dataclass
class _Holder:
    run: str = ""


_current: contextvars.ContextVar[_Holder | None] = contextvars.ContextVar("bench_holder", default=None)


def script_for(api: str, params: dict[str, str], body: dict[str, Any] | None = None) -> BenchScript:
    """The reply a benchmark message asks for.

    ``n`` deltas of ``size`` characters; ``rate`` deltas/s (0: as fast as possible);
    ``first`` seconds before the first delta; ``stall`` seconds of silence after
    ``stall_after`` deltas. A chat stream carries a usage chunk only when the request
    asks for one (``stream_options.include_usage``), as OpenAI does.
    """
    rid = params.get("id", "0")
    n = int(params.get("n", "20"))
    size = int(params.get("size", "5"))
    rate = float(params.get("rate", "0"))
    first = float(params.get("first", "0"))
    deltas = reply_deltas(n, size, rid=rid)
    if api == "chat":
        usage = bool(((body or {}).get("stream_options") or {}).get("include_usage"))
        raws = synth.chat_stream(deltas, usage=usage)
    else:
        raws = BUILDERS[api](deltas)
    step = 1.0 / rate if rate > 0 else 0.0
    events: list[tuple[float, RawEvent]] = []
    t = 0.0
    first_index = last_index = -1
    seen = 0
    for i, raw in enumerate(raws):
        if synth._is_delta(raw):
            if seen == 0:
                t = first
                first_index = i
            else:
                t += step
            seen += 1
            last_index = i
        events.append((round(t, 6), raw))
    script = BenchScript(events=events, run=rid, first_index=first_index, last_index=last_index)
    if "stall" in params:
        # The silence comes after the first ``stall_after`` deltas (counted from the first).
        script.stall_after = first_index + int(params.get("stall_after", "3"))
        script.stall = float(params["stall"])
    return script


class BenchFake(FaultyAPI):
    """``FaultyAPI`` that answers benchmark messages and stamps what it sends."""

    def __init__(self, *, speed: float = 1.0) -> None:
        super().__init__(self._source, speed=speed)
        self.stamps: dict[str, Stamps] = {}
        self._lock = threading.Lock()

    def stamp(self, run: str) -> Stamps:
        with self._lock:
            return self.stamps.setdefault(run, Stamps())

    def _source(self, request: TurnRequest) -> Script:
        params = parse_message(request.user)
        script = script_for(request.api, params, request.body)
        self.stamp(script.run).requested = time.time()
        holder = _current.get()
        if holder is not None:
            holder.run = script.run
        return script

    async def _paced(self, script: Script, started: float) -> AsyncIterator[bytes]:
        if not isinstance(script, BenchScript):
            async for chunk in super()._paced(script, started):
                yield chunk
            return
        stamps = self.stamp(script.run)
        n = 0
        async for chunk in super()._paced(script, started):
            now = time.time()
            if n == script.first_index:
                stamps.first_delta = now
            if n == script.last_index:
                stamps.last_delta = now
            n += 1
            stamps.sent = n
            yield chunk
        stamps.ended = time.time()


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def watched(core: BenchFake) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    """``asgi_app(core)`` plus a watch on the client's side of each connection: when a
    client closes a stream before its end, the run's ``disconnected`` is stamped at once
    and the stream stops (as a real server does), even while the script is silent."""
    inner = asgi_app(core)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        messages = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        buffered = iter(messages)
        gone = asyncio.Event()

        async def replay_receive() -> dict[str, Any]:
            try:
                return next(buffered)
            except StopIteration:
                await gone.wait()
                return {"type": "http.disconnect"}

        complete = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        holder = _Holder()
        token = _current.set(holder)
        try:
            task = asyncio.ensure_future(inner(scope, replay_receive, tracked_send))
        finally:
            _current.reset(token)

        async def watch() -> None:
            message = await receive()
            if message["type"] == "http.disconnect" and not complete and not task.done():
                if holder.run:
                    core.stamp(holder.run).disconnected = time.time()
                gone.set()
                task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await task
        except asyncio.CancelledError:
            if not gone.is_set():
                raise
        finally:
            watcher.cancel()

    return app


def serve(core: BenchFake) -> RunningServer:
    """``serve_in_thread`` with the disconnect watch."""
    return serve_in_thread(core, app=watched(core))
