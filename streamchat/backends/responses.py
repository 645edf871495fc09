"""The Responses API (`responses.create(stream=True)`), the live default.

Multi-turn state lives in a Conversation (Conversations API), kept in line with the
chat the page shows (Undo, Retry, Edit, a reopened saved chat: see ``_sync``); a server
without that API falls back to chaining ``previous_response_id``. Tool loop: ``function_call``
output items → ``function_call_output`` input items → the next response.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import openai
from openai.types.responses import ResponseStreamEvent

from .. import events as ev
from ..config import Config
from ..events import StreamEvent, TurnStatus
from ..sse import RawEvent
from .base import (
    Adapter,
    Backend,
    Conversation,
    Mark,
    ToolCall,
    TurnContext,
    error_message,
    raw_events,
    round_limit,
    run_calls,
    sdk_names,
)
from .history import history_key, visible

KNOWN_TYPES = sdk_names(ResponseStreamEvent, "type")
"""Every event type the installed SDK knows; any other is recorded and skipped."""

_END_STATUS: dict[str, TurnStatus] = {
    "completed": "completed",
    "incomplete": "incomplete",
    "failed": "failed",
    "cancelled": "cancelled",
}

_BUILTIN_CALLS = {
    "code_interpreter_call": "code_interpreter",
    "file_search_call": "file_search",
    "web_search_call": "web_search",
}


class ResponsesAdapter(Adapter):
    def __init__(self) -> None:
        super().__init__()
        self.response_id: str | None = None
        self._item_call: dict[str, str] = {}  # output item id → call id

    def _key(self, data: dict[str, Any]) -> tuple[str, int]:
        return (data.get("item_id", ""), data.get("content_index", 0))

    def handle(self, raw: RawEvent) -> list[StreamEvent]:
        data = raw.data
        if not isinstance(data, dict):
            return self.malformed(raw)
        kind = data.get("type") or raw.event or ""
        if kind == "response.output_text.delta":
            delta = data.get("delta", "")
            self.shown(self._key(data), delta)
            return [ev.text(delta)]
        if kind == "response.refusal.delta":
            delta = data.get("delta", "")
            self.shown(self._key(data), delta)
            return [ev.refusal(delta)]
        if kind == "response.output_text.done" and isinstance(data.get("text"), str):
            return self.reconcile(self._key(data), data["text"])
        if kind == "response.refusal.done" and isinstance(data.get("refusal"), str):
            return self.reconcile(self._key(data), data["refusal"], refusal=True)
        if kind == "response.reasoning_summary_text.delta":
            return [StreamEvent("reasoning", data.get("delta", ""))]
        if kind == "response.reasoning_summary_part.added" and data.get("summary_index", 0) > 0:
            return [StreamEvent("reasoning", "\n\n")]  # the next summary part: a new paragraph
        if kind == "response.output_text.annotation.added":
            written = len(self._shown.get(self._key(data), ""))
            return _citation(data.get("annotation") or {}, written)
        if kind == "response.output_item.added":
            return self._item_added(data.get("item") or {})
        if kind == "response.function_call_arguments.delta":
            call_id = self._item_call.get(data.get("item_id", ""))
            return [StreamEvent("tool_args", data.get("delta", ""), call_id=call_id)]
        if kind == "response.code_interpreter_call_code.delta":
            call_id = self._item_call.get(data.get("item_id", ""))
            return [StreamEvent("tool_args", data.get("delta", ""), call_id=call_id)]
        if kind == "response.output_item.done":
            return self._item_done(data.get("item") or {})
        if kind in ("response.created", "response.in_progress"):
            self.response_id = (data.get("response") or {}).get("id") or self.response_id
            return []
        if kind == "response.completed":
            return self._completed(data.get("response") or {})
        if kind == "response.incomplete":
            details = (data.get("response") or {}).get("incomplete_details") or {}
            # The reason may be a value the SDK's enum does not list: shown as given.
            reason = details.get("reason") or "unknown reason"
            self.finish("incomplete", f"The answer was cut short ({reason}).")
            return []
        if kind == "response.failed":
            message = error_message((data.get("response") or {}).get("error") or {})
            self.finish("failed", message)
            return [ev.error(message)]
        if kind == "error":
            # Flat ({code, message}) or nested ({error: {…}}): both seen in the wild.
            message = error_message(data)
            self.finish("failed", message)
            return [ev.error(message)]
        if kind not in KNOWN_TYPES:
            return self.skip_unknown(kind)
        return []

    def _completed(self, response: dict[str, Any]) -> list[StreamEvent]:
        """The terminal event: the answer is made to match the response's own output
        (a part whose deltas were lost or damaged, and whose ``.done`` never came), and
        the turn ends as the response's ``status`` says (compatible servers have sent
        ``response.completed`` with ``status: incomplete``)."""
        self.response_id = response.get("id") or self.response_id
        out: list[StreamEvent] = []
        for item in response.get("output") or []:
            if not isinstance(item, dict) or item.get("type") != "message":
                continue
            for index, part in enumerate(item.get("content") or []):
                key = (item.get("id", ""), index)
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    out += self.reconcile(key, part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    out += self.reconcile(key, part["refusal"], refusal=True)
        given = response.get("status") or "completed"
        status = _END_STATUS.get(given, "interrupted")
        if status == "completed":
            self.finish("completed")
        elif status == "incomplete":
            reason = (response.get("incomplete_details") or {}).get("reason") or "unknown reason"
            self.finish("incomplete", f"The answer was cut short ({reason}).")
        elif status == "failed":
            message = error_message(response.get("error") or {})
            self.finish("failed", message)
            out.append(ev.error(message))
        elif status == "cancelled":
            self.finish("cancelled", "The server cancelled the response.")
        else:
            self.finish("interrupted", f"The server ended the stream while the response was still {given!r}.")
        return out

    def _item_added(self, item: dict[str, Any]) -> list[StreamEvent]:
        item_type = item.get("type")
        if item_type == "function_call":
            call_id = item.get("call_id") or item.get("id") or ""
            self._item_call[item.get("id", call_id)] = call_id
            return [StreamEvent("tool_call", call_id=call_id, name=item.get("name", "?"))]
        if item_type in _BUILTIN_CALLS:
            call_id = item.get("id", "")
            self._item_call[call_id] = call_id
            extra = {"server": True}
            return [StreamEvent("tool_call", call_id=call_id, name=_BUILTIN_CALLS[item_type], extra=extra)]
        return []

    def _item_done(self, item: dict[str, Any]) -> list[StreamEvent]:
        item_type = item.get("type")
        if item_type == "function_call":
            call_id = item.get("call_id") or item.get("id") or ""
            call = ToolCall(call_id, item.get("name", ""), item.get("arguments") or "")
            self.calls.append(call)
            return [StreamEvent("tool_done", call.arguments, call_id=call_id, name=call.name)]
        if item_type in _BUILTIN_CALLS:
            call_id = item.get("id", "")
            out = [
                StreamEvent("tool_output", text, call_id=call_id, extra={"format": fmt}) for fmt, text in _builtin_output(item)
            ]
            out.append(StreamEvent("tool_done", call_id=call_id, name=_BUILTIN_CALLS[item_type]))
            return out
        return []


def _builtin_output(item: dict[str, Any]) -> list[tuple[str, str]]:
    """What a built-in tool call produced, as ``(format, text)`` pieces: code
    interpreter logs and image URLs, or what a search looked for and found."""
    parts: list[tuple[str, str]] = []
    for output in item.get("outputs") or []:
        if output.get("type") == "logs" and output.get("logs"):
            parts.append(("logs", output["logs"]))
        elif output.get("type") == "image" and output.get("url"):
            parts.append(("image", output["url"]))
    action = item.get("action") or {}
    queries = item.get("queries") or action.get("queries") or action.get("query")
    lines = []
    if queries:
        lines.append("Searched: " + (", ".join(queries) if isinstance(queries, list) else str(queries)))
    found = [r.get("filename") or r.get("file_id") for r in item.get("results") or []]
    found += [s.get("url") for s in action.get("sources") or []]
    if any(found):
        lines.append("Found: " + ", ".join(f for f in found if f))
    if action.get("type") == "open_page" and action.get("url"):
        lines.append(f"Opened: {action['url']}")
    if lines:
        parts.append(("text", "\n".join(lines)))
    return parts


def _citation(annotation: dict[str, Any], written: int) -> list[StreamEvent]:
    """A citation event. It may come a few deltas after the text it belongs to: ``back``
    says how many characters before the end of the text so far it goes."""
    kind = annotation.get("type")
    # file_citation: `index` is where it goes; file_path: `index` is not a text position.
    at = annotation.get("index") if kind == "file_citation" else annotation.get("end_index")
    extra = {"back": written - at} if isinstance(at, int) and 0 <= at < written else {}
    if kind == "url_citation":
        url = annotation.get("url", "")
        return [StreamEvent("citation", annotation.get("title") or url, url=url, extra=extra)]
    if kind in ("file_citation", "container_file_citation", "file_path"):
        name = annotation.get("filename") or annotation.get("file_id") or "file"
        return [StreamEvent("citation", name, url=f"file:{name}", extra=extra)]
    return []


def tool_specs(config: Config) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for tool in config.tools:
        if tool.type == "function":
            specs.append(
                {
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                }
            )
        elif tool.type == "code_interpreter":
            specs.append({"type": "code_interpreter", "container": {"type": "auto"}, **tool.options})
        else:
            specs.append({"type": tool.type, **tool.options})
    return specs


SEED_BATCH = 20
"""Items one ``conversations.create`` or ``conversations.items.create`` call may carry."""


def input_items(seen: list[dict[str, str]]) -> list[dict[str, Any]]:
    """A visible history as input items (``history.visible`` messages)."""
    return [{"type": "message", "role": m["role"], "content": m["content"]} for m in seen]


class ResponsesBackend(Backend):
    api = "responses"

    async def end_session(self, conv: Conversation) -> None:
        if conv.conversation_id:
            conversation_id, conv.conversation_id = conv.conversation_id, None
            await self.client.conversations.delete(conversation_id)
        conv.previous_response_id = None

    async def _sync(self, conv: Conversation, seen: list[dict[str, str]], key: str) -> list[dict[str, Any]]:
        """Bring the remote state in line with the history the page shows, before the
        model is asked. Returns input items the first request must carry before the
        user's message (chaining without the Conversations API, from an unknown history).

        Known history (one this session answered, or the empty chat): back to the
        state that answered it — the items after it are deleted from the conversation,
        or the chain continues from the response that produced it. Unknown history (a
        saved chat reopened, an app restart, an edit of an answer): a new conversation
        seeded with the visible history; the old one is deleted.
        """
        if key == conv.head and (conv.conversation_id or conv.chain_only):
            return []
        mark = conv.marks.get(key)
        if conv.chain_only:
            conv.previous_response_id = mark.response_id if mark else None
            return [] if mark or not seen else input_items(seen)
        if mark is not None and conv.conversation_id and mark.conversation_id == conv.conversation_id:
            with contextlib.suppress(openai.NotFoundError):  # gone (expired): seeded anew below
                await self._truncate(conv, mark.items)
                return []
        old = conv.conversation_id
        try:
            conv.conversation_id = await self._seeded(seen)
        except openai.NotFoundError:  # a server without the Conversations API: chain responses
            conv.conversation_id, conv.chain_only, conv.previous_response_id = None, True, None
            conv.marks.clear()
            return input_items(seen)
        conv.items = len(seen)
        conv.marks = {k: m for k, m in conv.marks.items() if m.conversation_id not in (old, None)}
        if old:
            with contextlib.suppress(openai.APIError):
                await self.client.conversations.delete(old)
        return []

    async def _seeded(self, seen: list[dict[str, str]]) -> str:
        """A new conversation holding ``seen`` (in batches: the API takes 20 items a call)."""
        items: Any = input_items(seen)
        first, rest = items[:SEED_BATCH], items[SEED_BATCH:]
        conversation_id = (
            await self.client.conversations.create(items=first) if first else await self.client.conversations.create()
        ).id
        for start in range(0, len(rest), SEED_BATCH):
            await self.client.conversations.items.create(conversation_id, items=rest[start : start + SEED_BATCH])
        return conversation_id

    async def _truncate(self, conv: Conversation, keep: int) -> None:
        """Delete the conversation's items after the first ``keep`` (undone turns, their
        tool calls and outputs included)."""
        assert conv.conversation_id is not None
        conversation_id = conv.conversation_id
        ids = [str(item.id) async for item in self.client.conversations.items.list(conversation_id, order="asc")]
        for item_id in ids[keep:]:
            await self.client.conversations.items.delete(item_id, conversation_id=conversation_id)
        conv.items = min(keep, len(ids))
        conv.marks = {k: m for k, m in conv.marks.items() if m.conversation_id != conversation_id or m.items <= conv.items}

    def _here(self, conv: Conversation) -> Mark:
        return Mark(conversation_id=conv.conversation_id, items=conv.items, response_id=conv.previous_response_id)

    async def turn(
        self, conv: Conversation, message: str, history: list[dict[str, Any]], ctx: TurnContext
    ) -> AsyncIterator[StreamEvent]:
        seen = visible(history)
        key = history_key(seen)
        earlier = await self._sync(conv, seen, key)
        conv.marks.setdefault(key, self._here(conv))
        conv.head = None  # until this turn's answer is settled
        tools = tool_specs(self.config)
        request_input: Any = [*earlier, {"role": "user", "content": message}]
        for round_ in range(ctx.max_rounds + 1):
            params: dict[str, Any] = {
                "model": self.config.model,
                "instructions": self.config.instructions,
                "input": request_input,
                "stream": True,
            }
            if tools:
                params["tools"] = tools
            if any(t["type"] == "code_interpreter" for t in tools):
                params["include"] = ["code_interpreter_call.outputs"]  # logs and images are left out otherwise
            if self.config.temperature is not None:
                params["temperature"] = self.config.temperature
            params.update(self.token_cap(ctx))
            if conv.conversation_id:
                params["conversation"] = conv.conversation_id
            elif conv.previous_response_id:
                params["previous_response_id"] = conv.previous_response_id
            adapter = ResponsesAdapter()
            added = len(request_input)
            async for raw in raw_events(self.client.responses.with_streaming_response.create(**params), ctx.tap):
                if isinstance(raw.data, dict) and raw.data.get("type") == "response.output_item.done":
                    added += 1
                for event in adapter.handle(raw):
                    yield event
            conv.items += added
            if adapter.response_id and not conv.conversation_id:
                conv.previous_response_id = adapter.response_id
            if adapter.status != "completed" or not adapter.calls:
                conv.pending = self._here(conv)
                yield ev.turn_end(adapter.status or "interrupted", adapter.message)
                return
            if round_ == ctx.max_rounds:
                break
            results: list[tuple[ToolCall, str]] = []
            async for event in run_calls(adapter.calls, ctx, results):
                yield event
            request_input = [{"type": "function_call_output", "call_id": c.call_id, "output": out} for c, out in results]
        conv.pending = self._here(conv)
        for event in round_limit(ctx):
            yield event
