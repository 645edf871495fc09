"""Fault injection for the replay API: streams that stall, break, or carry corrupt frames.

``FaultyAPI`` is the tests' and benchmarks' fake OpenAI server. It serves ``FaultScript``s
(a ``Script`` with faults) and plain ``Script``s alike; the app's replay path uses the
plain ``ReplayAPI`` and never imports this module.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..replayapi import Logged, ReplayAPI, Reply, Script, StreamDropped
from ..sse import frame, frame_raw


@dataclass
class FaultScript(Script):
    """A ``Script`` that misbehaves as real servers and networks do."""

    drop_after: int | None = None
    """Cut the connection after this many events (no terminal event, no clean end)."""
    stall_after: int | None = None
    """Go silent after this many events, for ``stall`` seconds."""
    stall: float = 0.0
    raw_tail: bytes = b""
    """Bytes sent after the events as they are (corrupt frames, odd framing)."""
    inject: dict[int, bytes] = field(default_factory=dict)
    """Bytes sent as they are just before event N (an extra corrupt or empty frame mid-stream)."""
    corrupt_at: frozenset[int] = frozenset()
    """Events sent with their JSON cut in half, so their ``data`` is not valid JSON."""
    stall_headers: float = 0.0
    """Seconds of silence before the response starts (status and headers included)."""


class FaultyAPI(ReplayAPI):
    """``ReplayAPI`` that also plays a ``FaultScript``'s faults, and can play a server
    without the Conversations API (``conversations_api = False``: creating one is a 404,
    as on servers that only chain ``previous_response_id``)."""

    conversations_api = True

    async def handle(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Reply:
        route = "/" + path.strip("/").removeprefix("v1/")
        if not self.conversations_api and method == "POST" and route == "/conversations":
            self.log.append(Logged(method, route, body))
            error = {
                "message": "Invalid URL (POST /v1/conversations)",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
            return Reply(404, {"error": error})
        return await super().handle(method, path, body, headers)

    def _delay(self, script: Script) -> float:
        return script.stall_headers if isinstance(script, FaultScript) else 0.0

    async def _paced(self, script: Script, started: float) -> AsyncIterator[bytes]:
        if not isinstance(script, FaultScript):
            async for chunk in super()._paced(script, started):
                yield chunk
            return
        for n, (t, raw) in enumerate(script.events):
            if script.drop_after is not None and n >= script.drop_after:
                raise StreamDropped
            if script.stall_after is not None and n == script.stall_after:
                await asyncio.sleep(script.stall)
            if n in script.inject:
                yield script.inject[n]
            await self._wait_until(started, t, n)
            if n in script.corrupt_at:
                data = raw.data if isinstance(raw.data, str) else json.dumps(raw.data, separators=(",", ":"))
                yield frame(raw.event, data[: len(data) // 2])
            else:
                yield frame_raw(raw)
        if len(script.events) in script.inject:
            yield script.inject[len(script.events)]
        if script.raw_tail:
            yield script.raw_tail
        if script.drop_after is not None:
            raise StreamDropped
