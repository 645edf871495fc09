"""The Assistants API (assistants, threads, messages, runs), with its server-side state.

A thread is a list of messages: added by the client (``threads.create(messages=…)``,
``messages.create``) or by a run (each ``thread.message.created`` it streams), listed
and deleted one by one. The model sees the thread's messages, then the function calls
and outputs of the run in progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..backends.assistants import event_name
from .base import Context, Reply, Script, Turn, error, message_context, text_of, turn_of

if TYPE_CHECKING:
    from . import ReplayAPI


@dataclass
class _Thread:
    messages: list[dict[str, Any]] = field(default_factory=list)
    run_tools: Context = field(default_factory=list)
    """Calls and outputs of the run in progress (a run's tool steps are not messages)."""
    started: float = 0.0


def _run_messages(script: Script) -> list[tuple[str, str]]:
    """The assistant messages a served run adds to its thread, ``(script's id, text)``:
    one per message id its ``thread.message`` events name."""
    texts: dict[str, str] = {}
    for _, raw in script.events:
        data = raw.data if isinstance(raw.data, dict) else {}
        kind, message_id = data.get("object"), data.get("id")
        if kind == "thread.message" and isinstance(message_id, str):
            texts.setdefault(message_id, "")
            if data.get("status") == "completed" and data.get("content"):
                texts[message_id] = text_of(data.get("content"))
        elif kind == "thread.message.delta" and message_id in texts:
            texts[message_id] += text_of((data.get("delta") or {}).get("content"))
    return list(texts.items())


def _run_calls(script: Script) -> Context:
    out: Context = []
    for _, raw in script.events:
        data = raw.data if isinstance(raw.data, dict) else {}
        if event_name(raw) == "thread.run.requires_action":
            action = (data.get("required_action") or {}).get("submit_tool_outputs") or {}
            for call in action.get("tool_calls") or []:
                fn = call.get("function") or {}
                out.append(("tool_call", f"{fn.get('name', '')}({fn.get('arguments', '')})"))
    return out


class AssistantsHandler:
    def __init__(self, core: ReplayAPI) -> None:
        self.core = core
        self.threads: dict[str, _Thread] = {}

    def _message(self, thread_id: str, role: str, given: Any, attachments: Any = None) -> dict[str, Any]:
        """A thread message as the API keeps it: text parts as ``{value, annotations}``,
        image parts as given, and the files attached for the thread's tools."""
        if not isinstance(given, list):
            given = [{"type": "text", "text": text_of(given)}]
        content = [
            {"type": "text", "text": {"value": text_of([p]), "annotations": []}}
            if isinstance(p, dict) and p.get("type") == "text"
            else p
            for p in given
            if isinstance(p, dict)
        ]
        message = {
            "attachments": attachments if isinstance(attachments, list) else [],
            "id": self.core.new_id("msg"),
            "object": "thread.message",
            "created_at": int(time.time()),
            "thread_id": thread_id,
            "role": role,
            "content": content,
            "status": "completed",
            "metadata": {},
        }
        return message

    def context(self, thread: _Thread) -> Context:
        out: Context = []
        for m in thread.messages:
            if m["role"] in ("user", "assistant"):
                out += message_context(m["role"], m["content"], self.core.lookup, m.get("attachments"))
        return out + thread.run_tools

    def stores(self, thread_id: str, body: dict[str, Any]) -> list[str]:
        """The vector stores a run may search: its thread's and its assistant's."""
        found: list[str] = []
        for owner in (self.core.objects.get(thread_id), self.core.objects.get(str(body.get("assistant_id")))):
            resources = (owner or {}).get("tool_resources") or {}
            found += [str(s) for s in (resources.get("file_search") or {}).get("vector_store_ids") or []]
        return found

    def route(self, method: str, parts: list[str], body: dict[str, Any], query: dict[str, str]) -> Reply | None:
        n = len(parts)
        if parts[0] == "assistants":
            if method == "POST" and n == 1:
                fields = {k: body.get(k) for k in ("name", "model", "instructions", "tools", "temperature", "tool_resources")}
                fields["tools"] = fields["tools"] or []
                return Reply(200, self.core.create("assistant", "asst", **fields))
            if method == "DELETE" and n == 2:
                return self.core.delete(parts[1], "assistant")
            return None
        if method == "POST" and n == 1:
            initial = body.get("messages") or []
            if len(initial) > 32:
                return error(400, "messages: at most 32 messages.", "too_many_messages")
            thread_obj = self.core.create("thread", "thread", tool_resources=body.get("tool_resources"))
            new = self.threads[thread_obj["id"]] = _Thread()
            for m in initial:
                new.messages.append(
                    self._message(thread_obj["id"], m.get("role", "user"), m.get("content"), m.get("attachments"))
                )
            return Reply(200, thread_obj)
        thread_id = parts[1]
        thread = self.threads.get(thread_id)
        if thread is None or thread_id not in self.core.objects:
            return error(404, f"No thread found with id '{thread_id}'.", "not_found")
        if method == "DELETE" and n == 2:
            del self.threads[thread_id]
            return self.core.delete(thread_id, "thread")
        if method == "POST" and n == 2:  # modify: tool_resources, metadata
            for key in ("tool_resources", "metadata"):
                if key in body:
                    self.core.objects[thread_id][key] = body[key]
            return Reply(200, self.core.objects[thread_id])
        if method == "GET" and n == 2:
            return Reply(200, self.core.objects[thread_id])
        if n >= 3 and parts[2] == "messages":
            return self._messages(method, parts, body, query, thread_id, thread)
        if method == "POST" and n == 3 and parts[2] == "runs":
            thread.run_tools = []
            context = self.context(thread)
            placed = turn_of(context)
            if placed is None:
                return error(400, "The thread has no user message to answer.", "no_message")
            thread.started = self.core.clock()
            return self._run(thread_id, thread, body, context, placed)
        if method == "POST" and n == 5 and parts[2] == "runs" and parts[4] == "submit_tool_outputs":
            for output in body.get("tool_outputs") or []:
                thread.run_tools.append(("tool_output", str(output.get("output", ""))))
            context = self.context(thread)
            placed = turn_of(context)
            if placed is None:
                return error(400, "The thread has no user message to answer.", "no_message")
            return self._run(thread_id, thread, body, context, placed)
        if method == "POST" and n == 5 and parts[2] == "runs" and parts[4] == "cancel":
            run = {"id": parts[3], "object": "thread.run", "thread_id": thread_id, "status": "cancelling"}
            return Reply(200, {**run, "created_at": int(time.time())})
        return None

    def _messages(
        self, method: str, parts: list[str], body: dict[str, Any], query: dict[str, str], thread_id: str, thread: _Thread
    ) -> Reply | None:
        n = len(parts)
        if method == "POST" and n == 3:
            message = self._message(thread_id, body.get("role", "user"), body.get("content"), body.get("attachments"))
            thread.messages.append(message)
            return Reply(200, message)
        if method == "GET" and n == 3:
            items = list(thread.messages) if query.get("order", "desc") == "asc" else thread.messages[::-1]
            after = query.get("after")
            if after:
                ids = [m["id"] for m in items]
                items = items[ids.index(after) + 1 :] if after in ids else []
            first, last = (items[0]["id"], items[-1]["id"]) if items else (None, None)
            return Reply(200, {"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": False})
        if method == "DELETE" and n == 4:
            before = len(thread.messages)
            thread.messages = [m for m in thread.messages if m["id"] != parts[3]]
            if len(thread.messages) == before:
                return error(404, f"No message found with id '{parts[3]}'.", "not_found")
            return Reply(200, {"id": parts[3], "object": "thread.message.deleted", "deleted": True})
        return None

    def _run(
        self, thread_id: str, thread: _Thread, body: dict[str, Any], context: Context, placed: tuple[str, int, int]
    ) -> Reply:
        user, position, rounds = placed
        turn = Turn(user, position, rounds, thread.started)
        script = self.core.script("assistants", turn, body, context, self.stores(thread_id, body))
        if isinstance(script, Reply):
            return script
        for _, text in _run_messages(script):
            thread.messages.append(self._message(thread_id, "assistant", text))
        thread.run_tools += _run_calls(script)
        return self.core.serve(script, thread.started)
