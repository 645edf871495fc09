"""Put a ``ReplayAPI`` on the wire: in-process (an httpx2 transport for the `openai`
client) or over real HTTP on 127.0.0.1 (an ASGI app run by uvicorn).

Both carry the same bytes; a scripted connection drop becomes a transport error in the
first and a reset connection in the second, which is what the client sees live.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx2
import uvicorn

from . import redact
from .replayapi import Logged, ReplayAPI, Reply, StreamDropped
from .validate import MAX_BODY, Invalid, check_request, parse_body, too_large


def _json_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def multipart_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """A ``multipart/form-data`` body (a file upload) as a dict: text fields as strings,
    file fields as ``{"filename", "content_type", "data": bytes}``; ``Invalid`` if unparsable."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not message.is_multipart():
        raise Invalid(400, "The multipart body could not be parsed.", None, "invalid_multipart")
    out: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            out[name] = {"filename": filename, "content_type": part.get_content_type(), "data": data}
        else:
            out[name] = data.decode("utf-8", "replace")
    return out


def _body(raw: bytes, content_type: str) -> Any:
    """A request body by its type: multipart (uploads) or JSON (``Invalid`` when bad)."""
    if content_type.startswith("multipart/form-data"):
        return multipart_body(raw, content_type)
    return parse_body(raw)


async def _logged_stream(core: ReplayAPI, path: str, stream: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """Pass the stream through, noting in the log when the client leaves early."""
    finished = False
    try:
        async for chunk in stream:
            yield chunk
        finished = True
    finally:
        if not finished:
            core.log.append(Logged("POST", path, None, event="disconnected"))


class _Body(httpx2.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except StreamDropped:
            raise httpx2.RemoteProtocolError("peer closed connection without completing the body") from None

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]


class ReplayTransport(httpx2.AsyncBaseTransport):
    """Answers the `openai` client's requests from a ``ReplayAPI``, in-process."""

    def __init__(self, core: ReplayAPI) -> None:
        self.core = core

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raw = await request.aread()
        content_type = request.headers.get("content-type", "")
        body = multipart_body(raw, content_type) if content_type.startswith("multipart/form-data") else _json_body(raw)
        headers = {k.lower(): v for k, v in request.headers.items()}
        query = request.url.query.decode() if isinstance(request.url.query, bytes) else str(request.url.query)
        path = f"{request.url.path}?{query}" if query else request.url.path  # list routes read the query
        reply = await self.core.handle(request.method, path, body, headers)
        if reply.stream is not None:
            stream = _Body(_logged_stream(self.core, request.url.path, reply.stream))
            return httpx2.Response(reply.status, headers=reply.headers, stream=stream, request=request)
        if reply.raw is not None:
            return httpx2.Response(reply.status, headers=reply.headers, content=reply.raw, request=request)
        return httpx2.Response(reply.status, headers=reply.headers, json=reply.body, request=request)


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _read_body(scope: dict[str, Any], receive: Receive, limit: int) -> bytes:
    """The request body, or ``Invalid`` (413) as soon as it is known to be over
    ``limit``: from its Content-Length before reading any of it, else while reading."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                if int(value) > limit:
                    raise too_large(limit)
            except ValueError:
                raise Invalid(400, "Bad Content-Length.", None, "invalid_request") from None
    return await read_body(receive, limit)


async def read_body(receive: Receive, limit: int | None = None) -> bytes:
    """An ASGI request's whole body (``Invalid`` 413 once it passes ``limit``, if given)."""
    raw = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        raw += message.get("body", b"")
        if limit is not None and len(raw) > limit:
            raise too_large(limit)
        if not message.get("more_body"):
            break
    return bytes(raw)


def _scrubbed_stream(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async def run() -> AsyncGenerator[bytes, None]:
        async for chunk in stream:
            text = chunk.decode("utf-8", "replace")
            yield redact.redact(text).encode("utf-8") if redact.may_hold_pattern(text) else chunk

    return run()


def asgi_app(
    core: ReplayAPI, *, max_body: int = MAX_BODY, redact_output: bool = False
) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    """The fake API as a bare ASGI app (no framework: it only needs bodies in, bytes out).

    Bodies over ``max_body`` bytes, nested too deep or with a field of the wrong type
    get a 4xx JSON error naming the field, before ``core`` sees them. With
    ``redact_output`` (the replay server), keys are redacted from every response.
    """

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        try:
            content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"content-type"), "")
            request_body = _body(await _read_body(scope, receive, max_body), content_type)
            check_request(scope["method"], scope["path"], request_body)
        except Invalid as exc:
            reply = Reply(exc.status, exc.body())
        else:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            query = scope.get("query_string", b"").decode("latin-1")
            path = f"{scope['path']}?{query}" if query else scope["path"]  # list routes read the query
            reply = await core.handle(scope["method"], path, request_body, headers)
        out_headers = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        if reply.stream is None:
            if reply.raw is not None:
                payload = reply.raw
            else:
                payload = json.dumps(redact.scrub(reply.body, None) if redact_output else reply.body).encode()
                out_headers.append((b"content-type", b"application/json"))
            await send({"type": "http.response.start", "status": reply.status, "headers": out_headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await send({"type": "http.response.start", "status": reply.status, "headers": out_headers})
        stream = _scrubbed_stream(reply.stream) if redact_output else reply.stream

        async def body() -> None:
            # StreamDropped propagates: uvicorn then resets the connection mid-body.
            async with contextlib.aclosing(_logged_stream(core, scope["path"], stream)) as chunks:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        # uvicorn drops writes to a closed connection silently, so a client that leaves
        # is noticed only through `receive`: stop the stream then (it logs the disconnect).
        streaming, watching = asyncio.ensure_future(body()), asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not streaming.done():
                streaming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await streaming
        if not streaming.cancelled():
            streaming.result()  # re-raises StreamDropped

    return app


@dataclass
class RunningServer:
    url: str
    """Base URL for an OpenAI client, ending in ``/v1``."""
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_asgi(app: Any, *, port: int = 0, lifespan: Literal["auto", "on", "off"] = "auto") -> RunningServer:
    """Serve an ASGI app on 127.0.0.1 from a background thread; returns once it accepts
    connections (``OSError`` when the port cannot be had)."""
    port = port or _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        if not thread.is_alive():
            raise OSError(f"cannot listen on 127.0.0.1:{port}")
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("the server did not start")
    return RunningServer(f"http://127.0.0.1:{port}/v1", server, thread)


def serve_in_thread(core: ReplayAPI, *, port: int = 0, app: Any = None) -> RunningServer:
    """Serve ``core`` (or an ASGI ``app`` wrapping it) on 127.0.0.1 from a background
    thread; returns once it accepts connections."""
    return serve_asgi(app or asgi_app(core), port=port)
