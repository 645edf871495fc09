"""The Responses and Conversations APIs, with their server-side state.

Each stored response keeps its input and output items and the response it continued
(``previous_response_id``), so the model's context for a chained request is the walk
along that chain. A conversation is an append-only list of items; each response made in
it appends its input and output items, and items can be listed, added and deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..sse import RawEvent
from .base import Context, FileLookup, Reply, Script, Turn, error, message_context, text_of, turn_of

if TYPE_CHECKING:
    from . import ReplayAPI


@dataclass
class _Stored:
    """A response as the server keeps it."""

    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    previous: str | None
    started: float


@dataclass
class _Conversation:
    items: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    """When the turn of its last user message started (tool rounds are paced from it)."""


def as_item(value: Any) -> dict[str, Any] | None:
    """An input item in its full form: ``{role, content}`` shorthand becomes a message."""
    if not isinstance(value, dict):
        return None
    item = dict(value)
    if "role" in item and item.get("type") in (None, "message"):
        item["type"] = "message"
        role = item["role"]
        kind = "output_text" if role == "assistant" else "input_text"
        content = item.get("content")
        if isinstance(content, str):
            item["content"] = [{"type": kind, "text": content, **({"annotations": []} if role == "assistant" else {})}]
    return item


def seen(item: dict[str, Any], lookup: FileLookup) -> Context:
    """What the model sees of one item (see ``Context``)."""
    kind = item.get("type")
    if kind == "message":
        role = item.get("role")
        if role in ("user", "assistant"):
            return message_context(str(role), item.get("content"), lookup)
        return []  # system and developer messages: instructions
    if kind == "function_call":
        return [("tool_call", f"{item.get('name', '')}({item.get('arguments', '')})")]
    if kind == "function_call_output":
        output = item.get("output")
        return [("tool_output", output if isinstance(output, str) else text_of(output))]
    if isinstance(kind, str) and kind.endswith("_call"):
        return [("tool_call", kind)]
    return []


def context_of(items: list[dict[str, Any]], lookup: FileLookup = lambda _: None) -> Context:
    return [entry for item in items for entry in seen(item, lookup)]


def search_stores(body: dict[str, Any]) -> list[str]:
    """The vector stores a request's file_search tool may search."""
    return [
        str(store)
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and tool.get("type") == "file_search"
        for store in tool.get("vector_store_ids") or []
    ]


def _output_items(script: Script) -> list[dict[str, Any]]:
    """The items a served stream adds: its ``output_item.done`` items, else the final
    response's ``output``."""
    done: list[dict[str, Any]] = []
    final: list[dict[str, Any]] = []
    for _, raw in script.events:
        data = raw.data if isinstance(raw.data, dict) else {}
        kind = data.get("type") or raw.event
        if kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            done.append(data["item"])
        elif kind in ("response.completed", "response.incomplete") and isinstance(data.get("response"), dict):
            final = [i for i in data["response"].get("output") or [] if isinstance(i, dict)]
    return done or final


class ResponsesHandler:
    def __init__(self, core: ReplayAPI) -> None:
        self.core = core
        self.stored: dict[str, _Stored] = {}
        self.conversations: dict[str, _Conversation] = {}

    def _keep(self, item: dict[str, Any]) -> dict[str, Any]:
        """An item as a conversation stores it: with an id of its own."""
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}.get(item.get("type", ""), "item")
        return {**item, "id": self.core.new_id(prefix)}

    def route(self, method: str, parts: list[str], body: dict[str, Any], query: dict[str, str]) -> Reply | None:
        n = len(parts)
        if parts[0] == "responses":
            if method == "POST" and n == 1:
                return self.respond(body)
            if method == "DELETE" and n == 2:
                if self.stored.pop(parts[1], None) is None:
                    return error(404, f"Response with id '{parts[1]}' not found.", "not_found")
                return Reply(200, {"id": parts[1], "object": "response.deleted", "deleted": True})
            return None
        if method == "POST" and n == 1:
            items = [i for i in (as_item(v) for v in body.get("items") or []) if i is not None]
            if len(items) > 20:
                return error(400, "items: at most 20 items at a time.", "too_many_items")
            conversation = self.core.create("conversation", "conv")
            self.conversations[conversation["id"]] = _Conversation([self._keep(i) for i in items])
            return Reply(200, conversation)
        conv_id = parts[1]
        state = self.conversations.get(conv_id)
        if state is None or conv_id not in self.core.objects:
            return error(404, f"Conversation with id '{conv_id}' not found.", "not_found")
        if method == "DELETE" and n == 2:
            del self.conversations[conv_id]
            return self.core.delete(conv_id, "conversation")
        if method == "GET" and n == 2:
            return Reply(200, self.core.objects[conv_id])
        if n >= 3 and parts[2] == "items":
            if method == "GET" and n == 3:
                items = list(state.items) if query.get("order", "desc") == "asc" else state.items[::-1]
                after = query.get("after")
                if after:
                    ids = [i["id"] for i in items]
                    items = items[ids.index(after) + 1 :] if after in ids else []
                page = {
                    "object": "list",
                    "data": items,
                    "first_id": items[0]["id"] if items else None,
                    "last_id": items[-1]["id"] if items else None,
                    "has_more": False,
                }
                return Reply(200, page)
            if method == "POST" and n == 3:
                items = [self._keep(i) for i in (as_item(v) for v in body.get("items") or []) if i is not None]
                state.items += items
                return Reply(200, {"object": "list", "data": items, "first_id": None, "last_id": None, "has_more": False})
            if method == "DELETE" and n == 4:
                before = len(state.items)
                state.items = [i for i in state.items if i.get("id") != parts[3]]
                if len(state.items) == before:
                    return error(404, f"Item with id '{parts[3]}' not found.", "not_found")
                return Reply(200, self.core.objects[conv_id])
        return None

    def _chain_items(self, response_id: str | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        seen_ids: set[str] = set()
        while response_id is not None and response_id not in seen_ids:
            seen_ids.add(response_id)
            stored = self.stored[response_id]
            items = stored.input + stored.output + items
            response_id = stored.previous
        return items

    def respond(self, body: dict[str, Any]) -> Reply:
        raw_input = body.get("input")
        raw_items = [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else raw_input or []
        new_items = [i for i in (as_item(v) for v in raw_items) if i is not None]
        conversation = body.get("conversation")
        if isinstance(conversation, dict):
            conversation = conversation.get("id")
        previous = body.get("previous_response_id")
        if conversation and previous:
            return error(400, "Use either conversation or previous_response_id, not both.", "invalid_request")
        state: _Conversation | None = None
        if conversation:
            state = self.conversations.get(conversation)
            if state is None or conversation not in self.core.objects:
                return error(404, f"Conversation with id '{conversation}' not found.", "not_found")
            before = state.items
            started = state.started
        elif previous:
            if previous not in self.stored:
                return error(404, f"Previous response with id '{previous}' not found.", "not_found")
            before = self._chain_items(previous)
            started = self.stored[previous].started
        else:
            before, started = [], 0.0
        context = context_of(before + new_items, self.core.lookup)
        placed = turn_of(context)
        if placed is None:
            return error(400, "No user message and no earlier response to continue.", "no_message")
        user, position, rounds = placed
        if any(i.get("type") == "message" and i.get("role") == "user" for i in new_items):
            started = self.core.clock()
        script = self.core.script("responses", Turn(user, position, rounds, started), body, context, search_stores(body))
        if isinstance(script, Reply):
            return script
        response_id = self.core.new_id("resp")
        script = _with_response_id(script, response_id)
        output = _output_items(script)
        self.stored[response_id] = _Stored(new_items, output, previous if not conversation else None, started)
        if state is not None:
            state.items = state.items + [self._keep(i) for i in new_items + output]
            state.started = started
        return self.core.serve(script, started)


def _with_response_id(script: Script, new_id: str) -> Script:
    """Give each served response a new id, so ``previous_response_id`` finds its chain
    even when two clients replay the same recording at once."""
    events = list(script.events)  # the few events that carry the response are replaced; the rest stay as they are
    for i, (t, raw) in enumerate(events):
        data = raw.data
        if isinstance(data, dict) and "response" in data and isinstance(data["response"], dict):
            events[i] = (t, RawEvent(raw.event, {**data, "response": {**data["response"], "id": new_id}}))
    return replace(script, events=events)
