"""Chat Completions: stateless, so the model sees the request's messages."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from .base import Context, FileLookup, Reply, Turn, error, message_context, text_of, turn_of

if TYPE_CHECKING:
    from . import ReplayAPI


def context_of(messages: list[Any], lookup: FileLookup = lambda _: None) -> Context:
    out: Context = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role in ("user", "assistant"):
            out += message_context(str(role), m.get("content"), lookup)
        if role == "assistant":
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                out.append(("tool_call", f"{fn.get('name', '')}({fn.get('arguments', '')})"))
        elif role == "tool":
            out.append(("tool_output", text_of(m.get("content"))))
    return out


class ChatHandler:
    def __init__(self, core: ReplayAPI) -> None:
        self.core = core
        self._starts: OrderedDict[str, float] = OrderedDict()

    def route(self, method: str, parts: list[str], body: dict[str, Any]) -> Reply | None:
        if method != "POST" or parts != ["chat", "completions"]:
            return None
        messages = body.get("messages")
        if not isinstance(messages, list):
            return error(400, "messages: expected a list.", "invalid_value")
        context = context_of(messages, self.core.lookup)
        placed = turn_of(context)
        if placed is None:
            return error(400, "messages: no user message.", "invalid_value")
        user, position, rounds = placed
        # The turn's start time, found again on its later (tool-loop) requests.
        last = max(i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user")
        key = hashlib.sha256(json.dumps(messages[: last + 1], sort_keys=True, default=str).encode()).hexdigest()
        if rounds == 0 or key not in self._starts:
            self._starts[key] = self.core.clock()
            while len(self._starts) > 4096:
                self._starts.popitem(last=False)
        started = self._starts[key]
        script = self.core.script("chat", Turn(user, position, rounds, started), body, context)
        if isinstance(script, Reply):
            return script
        return self.core.serve(script, started)
