"""The Assistants API, the seed's system (shut down by OpenAI on 2026-08-26, still
spoken by compatible servers and needed to replay old recordings).

One thread per browser session, kept in line with the chat the page shows (Undo, Retry,
Edit, a reopened saved chat: see ``_sync``); each turn adds the user's message and
streams a run.
Tool loop: ``thread.run.requires_action`` → ``submit_tool_outputs(stream=True)``,
which continues the same run in a new stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import openai
from openai.types.beta import AssistantStreamEvent

from .. import events as ev
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

_RUN_END: dict[str, TurnStatus] = {
    "thread.run.completed": "completed",
    "thread.run.incomplete": "incomplete",
    "thread.run.failed": "failed",
    "thread.run.cancelled": "cancelled",
    "thread.run.expired": "failed",
}
KNOWN_EVENTS = sdk_names(AssistantStreamEvent, "event")
"""Every event name the installed SDK knows; any other is recorded and skipped."""
_MARKER = re.compile(r"【[^【】]{0,40}†[^【】]{0,40}】")
"""A file-search source marker such as ``【4:0†source】`` (the dagger sets it apart
from the 【brackets】 Japanese text uses)."""
SEED_BATCH = 32
"""Messages one ``threads.create`` call may carry; the rest are added one by one."""
_OPEN_MARKER = re.compile(r"【[^【】]{0,80}$")


def event_name(raw: RawEvent) -> str:
    """The event's name; derived from the payload's ``object`` when the ``event:`` line
    is missing (some compatible servers omit it, and the SDK then misparses the event)."""
    if raw.event:
        return raw.event
    data = raw.data if isinstance(raw.data, dict) else {}
    obj = data.get("object", "")
    if not obj and ("error" in data or "message" in data):
        return "error"  # an error payload has no `object`: flat {code, message} or nested {error}
    if obj in ("thread.run", "thread.run.step") and data.get("status"):
        return f"{obj}.{data['status']}"
    if obj == "thread.message" and data.get("status"):
        return f"thread.message.{data['status']}"
    return obj or ""


class AssistantsAdapter(Adapter):
    def __init__(self, file_names: dict[str, str] | None = None) -> None:
        super().__init__()
        self.run_id: str | None = None
        self._calls_by_index: dict[tuple[str, int], str] = {}
        self._seen_calls: set[str] = set()
        self._outputs_seen: set[str] = set()
        self.done = False
        self.file_names: dict[str, str] = file_names if file_names is not None else {}
        """File id → name, learnt from file search results (citations carry only the id)."""
        self._held = ""
        self._marks: dict[str, StreamEvent] = {}
        self._waited: set[str] = set()

    def handle(self, raw: RawEvent) -> list[StreamEvent]:
        name = event_name(raw)
        data = raw.data
        if name == "done" or raw.is_done:
            self.done = True
            return self._flush()
        if name == "error":
            message = error_message(data)
            self.finish("failed", message)
            return [*self._flush(), ev.error(message)]
        if not isinstance(data, dict):
            return self.malformed(raw)
        if name.startswith("thread.run.") and data.get("object") == "thread.run":
            self.run_id = data.get("id") or self.run_id
        if name == "thread.message.delta":
            return self._message_delta(data)
        if name == "thread.message.completed":
            return [*self._flush(), *self._message_done(data)]
        if name == "thread.run.step.delta":
            return self._step_delta(data)
        if name == "thread.run.step.completed":
            return self._step_done(data)
        if name == "thread.run.requires_action":
            action = (data.get("required_action") or {}).get("submit_tool_outputs") or {}
            for call in action.get("tool_calls") or []:
                fn = call.get("function") or {}
                self.calls.append(ToolCall(call.get("id", ""), fn.get("name", ""), fn.get("arguments") or ""))
            self.finish("completed")  # this stream is over; the run goes on after the outputs
            done = [StreamEvent("tool_done", c.arguments, call_id=c.call_id, name=c.name) for c in self.calls]
            return [*self._flush(), *done]
        if name in _RUN_END:
            status = _RUN_END[name]
            message = ""
            if status == "failed":
                message = error_message(data.get("last_error") or {}) if data.get("last_error") else "The run failed."
            elif status == "incomplete":
                reason = (data.get("incomplete_details") or {}).get("reason") or "unknown reason"
                message = f"The answer was cut short ({reason})."
            self.finish(status, message)
            flushed = self._flush()
            return [*flushed, ev.error(message)] if status == "failed" else flushed
        if name not in KNOWN_EVENTS:
            return self.skip_unknown(name)
        return []

    def _message_done(self, data: dict[str, Any]) -> list[StreamEvent]:
        """The message's final text repairs what lost or damaged deltas left out."""
        out: list[StreamEvent] = []
        for index, part in enumerate(data.get("content") or []):
            value = (part.get("text") or {}).get("value") if part.get("type") == "text" else None
            if not isinstance(value, str):
                continue
            for event in self.reconcile((data.get("id", ""), index), value):
                if event.kind == "text":
                    out += self._text(event.text, final=True)  # markers in the repaired tail become citations
                else:  # a damaged middle: the final text, its source markers left out
                    clean = _MARKER.sub("", event.text)
                    shown = _MARKER.sub("", str(event.extra.get("shown", "")))
                    out.append(StreamEvent("text_final", clean, extra={"shown": shown}))
        return out

    def _message_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for part in (data.get("delta") or {}).get("content") or []:
            if part.get("type") != "text":
                continue
            text = part.get("text") or {}
            self.shown((data.get("id", ""), part.get("index", 0)), text.get("value") or "")
            later: list[StreamEvent] = []
            for note in text.get("annotations") or []:
                citation = self._citation(note)
                marker = note.get("text") or ""
                if _MARKER.fullmatch(marker):
                    self._marks[marker] = citation  # shown where the marker stands
                else:
                    later.append(citation)  # e.g. a sandbox: path: cited after the text
            out += self._text(text.get("value") or "")
            out += later
        return out

    def _citation(self, note: dict[str, Any]) -> StreamEvent:
        ref = note.get("file_citation") or note.get("file_path") or {}
        file_id = ref.get("file_id") or ""
        name = self.file_names.get(file_id) or ref.get("filename") or file_id or "file"
        return StreamEvent("citation", name, url=f"file:{name}", extra={"marker": note.get("text"), "file_id": file_id})

    def _text(self, value: str, final: bool = False) -> list[StreamEvent]:
        """Text with its 【…†…】 markers replaced by their citations. A marker split
        across deltas, or whose annotation has not come yet, is held back one delta."""
        buf, self._held = self._held + value, ""
        out: list[StreamEvent] = []
        pos = 0
        for match in _MARKER.finditer(buf):
            marker = match.group(0)
            citation = self._marks.get(marker)
            if citation is None and not final and marker not in self._waited:
                self._waited.add(marker)
                self._held = buf[match.start() :]
                buf = buf[: match.start()]
                break
            if match.start() > pos:
                out.append(ev.text(buf[pos : match.start()]))
            if citation is not None:
                out.append(citation)
            pos = match.end()
        rest = buf[pos:]
        tail = None if final else _OPEN_MARKER.search(rest)
        if tail is not None:
            self._held = rest[tail.start() :] + self._held
            rest = rest[: tail.start()]
        if rest:
            out.append(ev.text(rest))
        return out

    def _flush(self) -> list[StreamEvent]:
        return self._text("", final=True) if self._held else []

    def _step_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        details = (data.get("delta") or {}).get("step_details") or {}
        out: list[StreamEvent] = []
        step = data.get("id", "")
        for call in details.get("tool_calls") or []:
            key = (step, call.get("index", 0))
            call_id = call.get("id") or self._calls_by_index.get(key, "")
            self._calls_by_index[key] = call_id
            kind = call.get("type", "function")
            if call_id not in self._seen_calls:
                self._seen_calls.add(call_id)
                name = (call.get("function") or {}).get("name") if kind == "function" else kind
                extra = {} if kind == "function" else {"server": True}
                out.append(StreamEvent("tool_call", call_id=call_id, name=name or "?", extra=extra))
            if kind == "function":
                delta = (call.get("function") or {}).get("arguments") or ""
            elif kind == "code_interpreter":
                delta = (call.get("code_interpreter") or {}).get("input") or ""
            else:
                delta = ""
            if delta:
                out.append(StreamEvent("tool_args", delta, call_id=call_id))
            if kind == "code_interpreter":
                outputs = (call.get("code_interpreter") or {}).get("outputs") or []
                if outputs:
                    self._outputs_seen.add(call_id)
                out += _interpreter_outputs(call_id, outputs)
        return out

    def _step_done(self, data: dict[str, Any]) -> list[StreamEvent]:
        details = data.get("step_details") or {}
        out: list[StreamEvent] = []
        for call in details.get("tool_calls") or []:
            kind = call.get("type")
            call_id = call.get("id", "")
            if kind == "code_interpreter" and call_id not in self._outputs_seen:
                # Some servers send the outputs only with the completed step.
                out += _interpreter_outputs(call_id, (call.get("code_interpreter") or {}).get("outputs") or [])
            if kind == "file_search":
                results = (call.get("file_search") or {}).get("results") or []
                for result in results:
                    if result.get("file_id") and result.get("file_name"):
                        self.file_names[result["file_id"]] = result["file_name"]
                names = [r.get("file_name") or r.get("file_id") for r in results]
                if any(names):
                    found = "Found: " + ", ".join(n for n in names if n)
                    out.append(StreamEvent("tool_output", found, call_id=call_id, extra={"format": "text"}))
            if kind in ("code_interpreter", "file_search", "web_search"):
                out.append(StreamEvent("tool_done", call_id=call_id, name=kind))
        return out


def _interpreter_outputs(call_id: str, outputs: list[dict[str, Any]]) -> list[StreamEvent]:
    out = []
    for output in outputs:
        if output.get("type") == "logs" and output.get("logs"):
            out.append(StreamEvent("tool_output", output["logs"], call_id=call_id, extra={"format": "logs"}))
        elif output.get("type") == "image":
            # This API gives a file id, not a URL: named, not shown.
            file_id = (output.get("image") or {}).get("file_id") or "?"
            note = f"🖼️ Image output `{file_id}` (this API gives no URL to show it)"
            out.append(StreamEvent("tool_output", note, call_id=call_id, extra={"format": "markdown"}))
    return out


def tool_specs(config: Any) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for tool in config.tools:
        if tool.type == "function":
            fn = {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
            specs.append({"type": "function", "function": fn})
        elif tool.type == "file_search":
            options = {k: v for k, v in tool.options.items() if k != "vector_store_ids"}
            specs.append({"type": "file_search", "file_search": options} if options else {"type": "file_search"})
        elif tool.type == "code_interpreter":
            specs.append({"type": tool.type})
    return specs


def tool_resources(config: Any) -> dict[str, Any]:
    """What built-in tools read, set on the assistant: file_search's vector stores and
    code_interpreter's files (config.check_builtin_tools admits no other option)."""
    resources: dict[str, Any] = {}
    for tool in config.tools:
        if tool.type == "file_search" and tool.options.get("vector_store_ids"):
            resources["file_search"] = {"vector_store_ids": list(tool.options["vector_store_ids"])}
        elif tool.type == "code_interpreter" and tool.options.get("file_ids"):
            resources["code_interpreter"] = {"file_ids": list(tool.options["file_ids"])}
    return resources


class AssistantsBackend(Backend):
    api = "assistants"
    assistant_id: str | None = None
    _created = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_lock = asyncio.Lock()
        """Held while the assistant is created, so concurrent first turns create one."""

    async def start(self) -> None:
        if self.config.assistant_id:
            self.assistant_id = self.config.assistant_id
            return
        params: dict[str, Any] = {
            "model": self.config.model,
            "name": self.config.name,
            "instructions": self.config.instructions,
        }
        tools = tool_specs(self.config)
        if tools:
            params["tools"] = tools
        resources = tool_resources(self.config)
        if resources:
            params["tool_resources"] = resources
        if self.config.temperature is not None:
            params["temperature"] = self.config.temperature
        self.assistant_id = (await self.client.beta.assistants.create(**params)).id
        self._created = True

    async def close(self) -> None:
        if self._created and self.assistant_id:
            assistant_id, self.assistant_id, self._created = self.assistant_id, None, False
            await self.client.beta.assistants.delete(assistant_id)

    async def end_session(self, conv: Conversation) -> None:
        if conv.thread_id:
            thread_id, conv.thread_id = conv.thread_id, None
            await self.client.beta.threads.delete(thread_id)

    async def cancel(self, conv: Conversation) -> None:
        if conv.thread_id and conv.run_id:
            run_id, conv.run_id = conv.run_id, None
            await self.client.beta.threads.runs.cancel(run_id, thread_id=conv.thread_id)

    async def _sync(self, conv: Conversation, seen: list[dict[str, str]], key: str) -> None:
        """Bring the thread in line with the history the page shows, before the run.

        Known history (one this session answered, or the empty chat): the messages
        after it are deleted (a run's tool steps are not messages; deleting its answer
        removes what the model sees of it). Unknown history (a saved chat reopened, an
        app restart, an edited answer): a new thread seeded with it; the old one is
        deleted.
        """
        if key == conv.head and conv.thread_id:
            return
        threads = self.client.beta.threads
        mark = conv.marks.get(key)
        if mark is not None and conv.thread_id and mark.thread_id == conv.thread_id:
            thread_id = conv.thread_id
            with contextlib.suppress(openai.NotFoundError):  # gone: seeded anew below
                ids = [m.id async for m in threads.messages.list(thread_id, order="asc")]
                for message_id in ids[mark.messages :]:
                    await threads.messages.delete(message_id, thread_id=thread_id)
                conv.items = min(mark.messages, len(ids))
                conv.marks = {k: m for k, m in conv.marks.items() if m.thread_id != thread_id or m.messages <= conv.items}
                return
        old = conv.thread_id
        messages: Any = [{"role": m["role"], "content": m["content"]} for m in seen]
        first, rest = messages[:SEED_BATCH], messages[SEED_BATCH:]
        conv.thread_id = (await threads.create(messages=first) if first else await threads.create()).id
        for message in rest:  # past the per-create limit: one by one, in order
            await threads.messages.create(conv.thread_id, role=message["role"], content=message["content"])
        conv.items = len(seen)
        conv.marks = {k: m for k, m in conv.marks.items() if m.thread_id not in (old, None)}
        if old:
            with contextlib.suppress(openai.APIError):
                await threads.delete(old)

    def _here(self, conv: Conversation) -> Mark:
        return Mark(thread_id=conv.thread_id, messages=conv.items)

    async def turn(
        self, conv: Conversation, message: str, history: list[dict[str, Any]], ctx: TurnContext
    ) -> AsyncIterator[StreamEvent]:
        if self.assistant_id is None:
            async with self._start_lock:  # many sessions' first turns may arrive at once
                if self.assistant_id is None:
                    await self.start()
        assert self.assistant_id is not None
        threads = self.client.beta.threads
        seen = visible(history)
        key = history_key(seen)
        await self._sync(conv, seen, key)
        conv.marks.setdefault(key, self._here(conv))
        conv.head = None  # until this turn's answer is settled
        assert conv.thread_id is not None
        thread_id = conv.thread_id
        await threads.messages.create(thread_id, role="user", content=message)
        conv.items += 1
        cap: Any = self.token_cap(ctx)  # the run's cap covers its tool rounds too
        request: Any = threads.runs.with_streaming_response.create(thread_id, assistant_id=self.assistant_id, stream=True, **cap)
        file_names: dict[str, str] = {}  # found by a search in one stream, cited in a later one
        for round_ in range(ctx.max_rounds + 1):
            adapter = AssistantsAdapter(file_names)
            added: set[Any] = set()
            async for raw in raw_events(request, ctx.tap):
                if isinstance(raw.data, dict) and raw.data.get("object") == "thread.message":
                    added.add(raw.data.get("id"))  # the run adds this message to the thread
                for event in adapter.handle(raw):
                    yield event
                if adapter.run_id and conv.run_id != adapter.run_id:
                    conv.run_id = adapter.run_id
            conv.items += len(added)
            if adapter.status != "completed" or not adapter.calls:
                if adapter.status is not None:  # the run ended; else it may still be active: Stop/cleanup cancels it
                    conv.run_id = None
                conv.pending = self._here(conv)
                yield ev.turn_end(adapter.status or "interrupted", adapter.message)
                return
            if round_ == ctx.max_rounds:
                break
            results: list[tuple[ToolCall, str]] = []
            async for event in run_calls(adapter.calls, ctx, results):
                yield event
            outputs: list[Any] = [{"tool_call_id": c.call_id, "output": out} for c, out in results]
            run_id = conv.run_id or adapter.run_id or ""
            request = threads.runs.with_streaming_response.submit_tool_outputs(
                run_id, thread_id=thread_id, tool_outputs=outputs, stream=True
            )
        await self.cancel(conv)  # the run waits for outputs that will not come
        conv.pending = self._here(conv)
        for event in round_limit(ctx):
            yield event
