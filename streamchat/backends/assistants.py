"""The Assistants API, the seed's system (shut down by OpenAI on 2026-08-26, still
spoken by compatible servers and needed to replay old recordings).

One thread per browser session, kept in line with the chat the page shows (Undo, Retry,
Edit, a reopened saved chat: see ``_sync``); each turn adds the user's message and
streams a run.
Tool loop: ``thread.run.requires_action`` → ``submit_tool_outputs(stream=True)``,
which continues the same run in a new stream.

Files (``TurnContext.attachments``): an image is uploaded with purpose ``vision`` and
sent as an ``image_file`` part of the user's message; a document is uploaded (purpose
``assistants``) and, with ``file_search`` configured, added to the session's own vector
store (made with the first document, joined to the thread's ``tool_resources``; the
assistant keeps the stores the config gives it), with ``code_interpreter`` configured,
attached to the message for it; with neither, or a type file_search cannot read and no
code interpreter, it is refused in one line before anything is sent (``refuse``). Each
file is uploaded once per session (``Conversation.uploads``, by hash); ``end_session``
deletes the thread, the store and the uploads. Files the code interpreter makes (step
image outputs, ``image_file`` parts, ``file_path`` annotations) are downloaded once into
``TurnContext.outputs`` and shown as ``file`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from openai.types.beta import AssistantStreamEvent

from .. import events as ev
from ..attachments import IMAGE_TYPES, SEARCHABLE_TYPES, Attachment, AttachmentError, _sniff_image, inspect
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
    redact,
    round_limit,
    run_calls,
    sdk_names,
)
from .history import content_files, content_words, history_key, visible, visible_with_sources

log = logging.getLogger(__name__)

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
        self._files_seen: set[str] = set()

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
            if part.get("type") == "image_file":  # named again, or only here (no deltas)
                out += self._produced((part.get("image_file") or {}).get("file_id"))
                continue
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
            for note in (part.get("text") or {}).get("annotations") or []:
                out += self._produced_path(note)  # after the text that names it
        return out

    def _message_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for part in (data.get("delta") or {}).get("content") or []:
            if part.get("type") == "image_file":
                out += [*self._flush(), *self._produced((part.get("image_file") or {}).get("file_id"))]
                continue
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
                    later += self._produced_path(note)
            out += self._text(text.get("value") or "")
            out += later
        return out

    def _produced(self, file_id: Any, name: str = "") -> list[StreamEvent]:
        """A file the code interpreter made, reported once per stream as a ``file``
        event without a ``url``: the driver downloads it (this adapter does no I/O)."""
        if not isinstance(file_id, str) or not file_id or file_id in self._files_seen:
            return []
        self._files_seen.add(file_id)
        return [StreamEvent("file", name, extra={"file_id": file_id})]

    def _produced_path(self, note: dict[str, Any]) -> list[StreamEvent]:
        """A ``file_path`` annotation (``sandbox:/mnt/data/out.csv``): the file it names."""
        if note.get("type") != "file_path" and "file_path" not in note:
            return []
        path = str(note.get("text") or "")
        return self._produced((note.get("file_path") or {}).get("file_id"), path.rsplit("/", 1)[-1])

    def _citation(self, note: dict[str, Any]) -> StreamEvent:
        ref = note.get("file_citation") or note.get("file_path") or {}
        file_id = ref.get("file_id") or ""
        made = str(note.get("text") or "").rsplit("/", 1)[-1] if note.get("file_path") else ""  # sandbox:/mnt/data/x.csv
        name = self.file_names.get(file_id) or ref.get("filename") or made or file_id or "file"
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
                out += self._interpreter_outputs(call_id, outputs)
        return out

    def _step_done(self, data: dict[str, Any]) -> list[StreamEvent]:
        details = data.get("step_details") or {}
        out: list[StreamEvent] = []
        for call in details.get("tool_calls") or []:
            kind = call.get("type")
            call_id = call.get("id", "")
            if kind == "code_interpreter" and call_id not in self._outputs_seen:
                # Some servers send the outputs only with the completed step.
                out += self._interpreter_outputs(call_id, (call.get("code_interpreter") or {}).get("outputs") or [])
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

    def _interpreter_outputs(self, call_id: str, outputs: list[dict[str, Any]]) -> list[StreamEvent]:
        out = []
        for output in outputs:
            if output.get("type") == "logs" and output.get("logs"):
                out.append(StreamEvent("tool_output", output["logs"], call_id=call_id, extra={"format": "logs"}))
            elif output.get("type") == "image":
                # A file id, not a URL: named in the tool's bubble, shown once downloaded.
                file_id = (output.get("image") or {}).get("file_id")
                note = f"🖼️ Image output `{file_id or '?'}`"
                out.append(StreamEvent("tool_output", note, call_id=call_id, extra={"format": "markdown"}))
                out += self._produced(file_id)
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


def _tool_types(config: Any) -> set[str]:
    return {tool.type for tool in config.tools}


def refusal(attachments: tuple[Attachment, ...], tools: set[str]) -> str | None:
    """Why this assistant cannot take one of these files: a document needs file_search
    (to search it) or code_interpreter (to read it); images always go (``image_file``)."""
    for a in attachments:
        if a.kind != "document":
            continue
        if "code_interpreter" in tools or ("file_search" in tools and a.mime in SEARCHABLE_TYPES):
            continue
        if "file_search" in tools:
            return (
                f"{a.name}: file_search cannot read {a.mime} files; add the code_interpreter tool to the config's"
                " tools: to send it. Nothing was sent."
            )
        return (
            f"{a.name}: documents need the file_search or code_interpreter tool on the Assistants backend; add one"
            " to the config's tools:. Nothing was sent."
        )
    return None


@dataclass
class _Indexed:
    """A file in a session's vector store, and the thread message (index) it came with:
    a turn undone takes its documents out of the store, as its message leaves the thread."""

    sha256: str
    name: str
    position: int


_UNSEEN = 1 << 62


def _mime_of(name: str, data: bytes) -> str:
    image = _sniff_image(data[:16])
    return IMAGE_TYPES[image] if image else mimetypes.guess_type(name)[0] or "application/octet-stream"


def _safe_name(name: str) -> str:
    clean = re.sub(r"[^\w.\- ]", "_", os.path.basename(name.replace("\\", "/"))).strip(" .")
    return clean or "file"


class AssistantsBackend(Backend):
    api = "assistants"
    assistant_id: str | None = None
    _created = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_lock = asyncio.Lock()
        """Held while the assistant is created, so concurrent first turns create one."""
        self._indexed: dict[str, dict[str, _Indexed]] = {}
        """By session vector store: its files (by file id), each with the message it came with."""

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

    def refuse(self, attachments: tuple[Attachment, ...]) -> str | None:
        return refusal(attachments, _tool_types(self.config))

    async def end_session(self, conv: Conversation) -> None:
        """Delete the session's thread, its vector store and every file it uploaded: each
        on its own, so one failure (logged) does not keep the rest alive; nothing raises."""
        thread_id, store_id, file_ids = conv.thread_id, conv.vector_store_id, list(conv.uploads.values())
        conv.thread_id, conv.vector_store_id, conv.uploads = None, None, {}
        steps: list[tuple[str, Awaitable[Any]]] = []
        if thread_id:
            steps.append((f"thread {thread_id}", self.client.beta.threads.delete(thread_id)))
        if store_id:
            self._indexed.pop(store_id, None)
            steps.append((f"vector store {store_id}", self.client.vector_stores.delete(store_id)))
        steps += [(f"file {file_id}", self.client.files.delete(file_id)) for file_id in file_ids]
        results = await asyncio.gather(*(step for _, step in steps), return_exceptions=True)
        for (what, _), result in zip(steps, results, strict=True):
            if isinstance(result, openai.NotFoundError):
                continue  # already gone
            if isinstance(result, BaseException):
                log.warning("could not delete %s: %s", what, redact(str(result), self.client.api_key))

    async def cancel(self, conv: Conversation) -> None:
        if conv.thread_id and conv.run_id:
            run_id, conv.run_id = conv.run_id, None
            await self.client.beta.threads.runs.cancel(run_id, thread_id=conv.thread_id)

    async def _sync(
        self, conv: Conversation, history: list[dict[str, Any]], seen: list[dict[str, str]], key: str
    ) -> list[StreamEvent]:
        """Bring the thread in line with the history the page shows, before the run;
        returns notices for the chat (a document the store could not index).

        Known history (one this session answered, or the empty chat): the messages
        after it are deleted (a run's tool steps are not messages; deleting its answer
        removes what the model sees of it), and the documents they brought leave the
        session's vector store. Unknown history (a saved chat reopened, an app restart,
        an edited answer): a new thread seeded with it, its user messages' files sent
        again while Gradio's copies exist (``_seed``); the old one is deleted.
        """
        if key == conv.head and conv.thread_id:
            return []
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
                await self._unindex(conv, lambda f: f.position >= conv.items)
                return []
        old = conv.thread_id
        notes: list[StreamEvent] = []
        messages = await self._seed(conv, history, seen, notes)
        first, rest = messages[:SEED_BATCH], messages[SEED_BATCH:]
        params: dict[str, Any] = {"messages": first} if first else {}
        if conv.vector_store_id:  # the session's documents stay searchable in the new thread
            params["tool_resources"] = self._thread_resources(conv)
        conv.thread_id = (await threads.create(**params)).id
        for message in rest:  # past the per-create limit: one by one, in order
            await threads.messages.create(conv.thread_id, **message)
        conv.items = len(seen)
        conv.marks = {k: m for k, m in conv.marks.items() if m.thread_id not in (old, None)}
        if old:
            with contextlib.suppress(openai.APIError):
                await threads.delete(old)
        return notes

    async def _seed(
        self, conv: Conversation, history: list[dict[str, Any]], seen: list[dict[str, str]], notes: list[StreamEvent]
    ) -> list[Any]:
        """The messages of a new thread for ``seen``. A user message's files still on
        disk go again as they went (images as ``image_file``, documents to the store or
        the code interpreter); one gone keeps its ``[file: name]`` label in the text.
        The store keeps only the documents of this history (a gone one by its name)."""
        sources = [content for _, content in visible_with_sources(history)]
        if len(sources) != len(seen):  # cannot happen (same walk as `visible`); text only then
            sources = [None] * len(seen)
        indexed = self._indexed.get(conv.vector_store_id or "", {})
        for entry in indexed.values():
            entry.position = _UNSEEN
        messages: list[Any] = []
        for i, (message, content) in enumerate(zip(seen, sources, strict=True)):
            files, words = (content_files(content), content_words(content)) if message["role"] == "user" else ([], "")
            found: list[Attachment] = []
            for name, path in files:
                try:
                    found.append(inspect(path, self.config.attachments, name=name))
                except AttachmentError:
                    for entry in indexed.values():
                        if entry.name == name:  # gone from disk: its stored copy stands for it
                            entry.position = min(entry.position, i)
            sendable = tuple(a for a in found if refusal((a,), _tool_types(self.config)) is None)
            if not sendable:
                messages.append({"role": message["role"], "content": message["content"]})
                continue
            text = words if len(sendable) == len(files) else message["content"]
            messages.append(await self._message(conv, text, sendable, i, notes))
        await self._unindex(conv, lambda f: f.position == _UNSEEN)
        return messages

    def _thread_resources(self, conv: Conversation) -> dict[str, Any]:
        """The thread's own tool resources: the session's vector store (the assistant
        keeps the stores the config gives it, searched as well)."""
        return {"file_search": {"vector_store_ids": [conv.vector_store_id]}} if conv.vector_store_id else {}

    async def _upload(self, conv: Conversation, attachment: Attachment, purpose: str) -> str:
        """The file id of an attachment: uploaded once per session, reused by its hash."""
        file_id = conv.uploads.get(attachment.sha256)
        if file_id is None:
            made = await self.client.files.create(file=(attachment.name, attachment.read(), attachment.mime), purpose=purpose)  # type: ignore[arg-type]
            file_id = conv.uploads[attachment.sha256] = made.id
        return file_id

    async def _index(self, conv: Conversation, attachment: Attachment, file_id: str, position: int) -> list[StreamEvent]:
        """Put a document in the session's vector store (made with the first one)."""
        if conv.vector_store_id is None:
            store = await self.client.vector_stores.create(
                name="streamchat session", expires_after={"anchor": "last_active_at", "days": 1}
            )  # expires if the app dies before it can delete it
            conv.vector_store_id = store.id
        store_id = conv.vector_store_id
        indexed = self._indexed.setdefault(store_id, {})
        if file_id in indexed:
            indexed[file_id].position = min(indexed[file_id].position, position)
            return []
        done = await self.client.vector_stores.files.create_and_poll(file_id=file_id, vector_store_id=store_id)
        if done.status != "completed":
            reason = done.last_error.message if done.last_error else done.status
            return [
                ev.notice(f"{attachment.name}: the vector store could not index it ({reason}); file_search will not find it.")
            ]
        indexed[file_id] = _Indexed(attachment.sha256, attachment.name, position)
        return []

    async def _unindex(self, conv: Conversation, gone: Callable[[_Indexed], bool]) -> None:
        """Take out of the session's store the documents of messages no longer shown."""
        store_id = conv.vector_store_id
        indexed = self._indexed.get(store_id or "", {})
        for file_id in [f for f, entry in indexed.items() if gone(entry)]:
            del indexed[file_id]
            assert store_id is not None
            with contextlib.suppress(openai.NotFoundError):
                await self.client.vector_stores.files.delete(file_id, vector_store_id=store_id)

    async def _message(
        self, conv: Conversation, text: str, attachments: tuple[Attachment, ...], position: int, notes: list[StreamEvent]
    ) -> dict[str, Any]:
        """A user message with its files: images as ``image_file`` parts (uploaded for
        vision); documents in the session's vector store (file_search) and attached for
        the code interpreter, as the config's tools allow (``refusal`` said which)."""
        tools = _tool_types(self.config)
        parts: list[dict[str, Any]] = []
        attached: list[dict[str, Any]] = []
        for a in attachments:
            if a.kind == "image":
                parts.append({"type": "image_file", "image_file": {"file_id": await self._upload(conv, a, "vision")}})
                continue
            file_id = await self._upload(conv, a, "assistants")
            if "file_search" in tools and a.mime in SEARCHABLE_TYPES:
                notes += await self._index(conv, a, file_id, position)
            if "code_interpreter" in tools:
                attached.append({"file_id": file_id, "tools": [{"type": "code_interpreter"}]})
        content: Any = text or "\n".join(f"[file: {a.name}]" for a in attachments)  # a message needs some content
        if parts:
            content = [{"type": "text", "text": text}, *parts] if text else parts
        message: dict[str, Any] = {"role": "user", "content": content}
        if attached:
            message["attachments"] = attached
        return message

    async def _fetch(self, event: StreamEvent, ctx: TurnContext, fetched: set[str]) -> list[StreamEvent]:
        """A file the code interpreter made (a ``file`` event from the adapter): downloaded
        once into ``ctx.outputs``, handed to the tap (a recording keeps it), shown."""
        file_id = str(event.extra.get("file_id") or "")
        if not file_id or file_id in fetched:
            return []
        fetched.add(file_id)
        if ctx.outputs is None:  # not downloaded: named only
            return [event]
        name = event.text
        try:
            data = (await self.client.files.content(file_id)).content
            if not name:
                with contextlib.suppress(openai.APIError):
                    name = os.path.basename((await self.client.files.retrieve(file_id)).filename or "")
        except (openai.APIError, httpx2.HTTPError) as exc:
            why = f"the server answered {exc.status_code}" if isinstance(exc, openai.APIStatusError) else "the connection failed"
            return [ev.notice(f"Could not download {name or file_id}: {why}.")]
        mime = _mime_of(name, data)
        if not name:
            name = file_id + (mimetypes.guess_extension(mime) or "")
        path = ctx.outputs / _safe_name(file_id) / _safe_name(name)  # a folder per file: names may repeat
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            return [ev.notice(f"Could not save {name}: {exc.strerror or exc}.")]
        ctx.tap.output_file(file_id, name, data)
        return [StreamEvent("file", name, url=str(path), extra={"mime": mime, "file_id": file_id})]

    def _here(self, conv: Conversation) -> Mark:
        return Mark(thread_id=conv.thread_id, messages=conv.items)

    async def turn(
        self, conv: Conversation, message: str, history: list[dict[str, Any]], ctx: TurnContext
    ) -> AsyncIterator[StreamEvent]:
        refused = self.refuse(ctx.attachments) if ctx.attachments else None
        if refused is not None:  # ChatSession asks first; this keeps the driver safe on its own
            yield ev.turn_end("failed", refused)
            return
        if self.assistant_id is None:
            async with self._start_lock:  # many sessions' first turns may arrive at once
                if self.assistant_id is None:
                    await self.start()
        assert self.assistant_id is not None
        threads = self.client.beta.threads
        seen = visible(history)
        key = history_key(seen)
        if ctx.attachments:
            yield ev.waiting("Sending the files…")
        for note in await self._sync(conv, history, seen, key):
            yield note
        conv.marks.setdefault(key, self._here(conv))
        conv.head = None  # until this turn's answer is settled
        assert conv.thread_id is not None
        thread_id = conv.thread_id
        if ctx.attachments:
            store, notes = conv.vector_store_id, list[StreamEvent]()
            user = await self._message(conv, message, ctx.attachments, conv.items, notes)
            if conv.vector_store_id != store:  # the session's first document: its store joins the thread
                await threads.update(thread_id, tool_resources=self._thread_resources(conv))  # type: ignore[arg-type]
            for note in notes:
                yield note
            await threads.messages.create(thread_id, **user)
        else:
            await threads.messages.create(thread_id, role="user", content=message)
        conv.items += 1
        cap: Any = self.token_cap(ctx)  # the run's cap covers its tool rounds too
        request: Any = threads.runs.with_streaming_response.create(thread_id, assistant_id=self.assistant_id, stream=True, **cap)
        file_names: dict[str, str] = {}  # found by a search in one stream, cited in a later one
        fetched: set[str] = set()  # files downloaded this turn, once each
        for round_ in range(ctx.max_rounds + 1):
            adapter = AssistantsAdapter(file_names)
            added: set[Any] = set()
            async for raw in raw_events(request, ctx.tap):
                if isinstance(raw.data, dict) and raw.data.get("object") == "thread.message":
                    added.add(raw.data.get("id"))  # the run adds this message to the thread
                for event in adapter.handle(raw):
                    if event.kind == "file" and not event.url:  # made by the code interpreter
                        for shown in await self._fetch(event, ctx, fetched):
                            yield shown
                    else:
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
