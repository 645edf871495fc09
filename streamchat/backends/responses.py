"""The Responses API (`responses.create(stream=True)`), the live default.

Multi-turn state lives in a Conversation (Conversations API), kept in line with the
chat the page shows (Undo, Retry, Edit, a reopened saved chat: see ``_sync``); a server
without that API falls back to chaining ``previous_response_id``. Tool loop: ``function_call``
output items → ``function_call_output`` input items → the next response.

Files the user attaches (``TurnContext.attachments``) go with the message in this API's
own forms (``ResponsesBackend._content``): images as ``input_image`` data URLs, documents
into the session's own vector store when ``file_search`` is configured, else as
``input_file``; with ``code_interpreter`` documents are also its container's files.
Files the interpreter produces are downloaded once the stream ends (``_download``).
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import openai
from openai.types.file_create_params import ExpiresAfter as FileExpiresAfter
from openai.types.responses import ResponseStreamEvent
from openai.types.vector_store_create_params import ExpiresAfter

from .. import events as ev
from ..attachments import SEARCHABLE_TYPES, Attachment, AttachmentError, inspect
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
    describe_error,
    error_message,
    raw_events,
    round_limit,
    run_calls,
    sdk_names,
)
from .history import history_key, visible

log = logging.getLogger(__name__)

KNOWN_TYPES = sdk_names(ResponseStreamEvent, "type")
"""Every event type the installed SDK knows; any other is recorded and skipped."""

_END_STATUS: dict[str, TurnStatus] = {
    "completed": "completed",
    "incomplete": "incomplete",
    "failed": "failed",
    "cancelled": "cancelled",
}

INCLUDE = {"code_interpreter": "code_interpreter_call.outputs", "file_search": "file_search_call.results"}
"""What a built-in tool's call item carries only when asked for (``include``): shown in its
bubble (``_builtin_output``)."""

_BUILTIN_CALLS = {
    "code_interpreter_call": "code_interpreter",
    "file_search_call": "file_search",
    "web_search_call": "web_search",
}


@dataclass(frozen=True)
class ProducedFile:
    """A file the code interpreter made, as a ``container_file_citation`` names it."""

    file_id: str
    container_id: str
    filename: str


class ResponsesAdapter(Adapter):
    def __init__(self) -> None:
        super().__init__()
        self.response_id: str | None = None
        self._item_call: dict[str, str] = {}  # output item id → call id
        self.produced: dict[str, ProducedFile] = {}
        """Files the stream's answer cites from a container, by file id, in order of
        first mention: the driver downloads them (the adapter does no I/O)."""

    def _note_file(self, annotation: Any) -> None:
        if not isinstance(annotation, dict) or annotation.get("type") != "container_file_citation":
            return
        file_id, container_id = annotation.get("file_id"), annotation.get("container_id")
        if isinstance(file_id, str) and file_id and isinstance(container_id, str) and file_id not in self.produced:
            name = annotation.get("filename")
            self.produced[file_id] = ProducedFile(file_id, container_id, name if isinstance(name, str) and name else file_id)

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
            self._note_file(data.get("annotation"))
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
                if part.get("type") == "output_text":
                    for annotation in part.get("annotations") or []:
                        self._note_file(annotation)  # also when its annotation.added event was lost
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


def session_tools(specs: list[dict[str, Any]], conv: Conversation, documents: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The request's tools with the session's files in them: ``file_search`` searches the
    configured stores and the session's own (without configured stores the tool is sent
    only once the session has one: the API needs a store to search); an ``auto`` code
    interpreter container gets ``documents`` (the ids of every document the session
    uploaded), so a new container (the old one expired) has them too. A configured
    container id is left as it is."""
    out: list[dict[str, Any]] = []
    for spec in specs:
        if spec["type"] == "file_search":
            stores = [*(spec.get("vector_store_ids") or []), *([conv.vector_store_id] if conv.vector_store_id else [])]
            if not stores:
                continue
            spec = {**spec, "vector_store_ids": stores}
        elif spec["type"] == "code_interpreter" and documents:
            container = spec.get("container")
            if isinstance(container, dict) and container.get("type", "auto") == "auto":
                given = [str(f) for f in container.get("file_ids") or []]
                spec = {
                    **spec,
                    "container": {**container, "file_ids": [*given, *(f for f in documents if f not in given)]},
                }
        out.append(spec)
    return out


SEED_BATCH = 20
"""Items one ``conversations.create`` or ``conversations.items.create`` call may carry."""

UPLOAD_PURPOSE: Literal["assistants"] = "assistants"
"""Documents are uploaded once for both tools that take them: file_search (a vector
store's files) and the code interpreter (an ``auto`` container's ``file_ids``)."""
IMAGE_INLINE_MAX = 4 * 1024 * 1024
"""An image up to this many bytes goes as a data URL; a larger one is uploaded (purpose
``vision``) and sent by its file id. A request's whole payload is capped (50 MB at
OpenAI), and five images at the default limit of 20 MiB would be some 130 MB as data
URLs (base64 adds a third)."""
_SUFFIXES = {
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
}
INDEX_WAIT = 120.0
"""Seconds to wait for a document to be indexed in the session's vector store."""
STORE_EXPIRY: ExpiresAfter = {"anchor": "last_active_at", "days": 7}
"""The session's store expires on its own a week after its last use, and each upload a
week after it was made (``FILE_EXPIRY``), should the app stop before ``end_session``
deletes them (a tab left open and idle longer than that loses them)."""
FILE_EXPIRY: FileExpiresAfter = {"anchor": "created_at", "seconds": 7 * 24 * 3600}


def _file_refs(content: Any) -> list[tuple[str, str]]:
    """``(path, name)`` of each file part of a message's content, in the shapes
    ``history.part_text`` labels as ``[file: name]``."""
    out: list[tuple[str, str]] = []
    for part in content if isinstance(content, list) else [content]:
        value: Any = None
        if isinstance(part, (tuple, list)) and part:
            value = part[0]
        elif isinstance(part, dict) and (part.get("type") == "file" or "file" in part):
            value = part.get("file") or part
        elif isinstance(part, dict) and "path" in part:
            value = part
        path = value.get("path") if isinstance(value, dict) else value
        if isinstance(path, str) and path:
            name = value.get("orig_name") if isinstance(value, dict) else None
            out.append((path, str(name or os.path.basename(path))))
    return out


def visible_with_files(history: list[dict[str, Any]]) -> list[tuple[dict[str, str], list[tuple[str, str]]]]:
    """``history.visible(history)``, message for message, each user message with the
    files its parts name (``(path, name)``)."""
    out: list[tuple[dict[str, str], list[tuple[str, str]]]] = []
    for message in history or []:
        shown = visible([message])
        if not shown:
            continue
        one = shown[0]
        if out and out[-1][0]["role"] == one["role"] == "assistant":  # joined, as ``visible`` joins them
            out[-1] = ({"role": "assistant", "content": out[-1][0]["content"] + "\n\n" + one["content"]}, [])
            continue
        out.append((one, _file_refs(message.get("content")) if one["role"] == "user" else []))
    return out


def wire_name(attachment: Attachment) -> str:
    """The file's name as sent: the API tells a file's type by its extension, and a PDF or
    an image is recognised by its bytes here whatever it was called."""
    suffixes = _SUFFIXES.get(attachment.mime)
    if suffixes and not attachment.name.lower().endswith(suffixes):
        return attachment.name + suffixes[0]
    return attachment.name


def _safe_part(name: str, fallback: str) -> str:
    """A file or folder name from a server, safe to join to a local folder."""
    name = os.path.basename(name.replace("\\", "/")).replace("\x00", "").strip()
    return name if name not in ("", ".", "..") else fallback


class ResponsesBackend(Backend):
    api = "responses"

    def __init__(self, client: openai.AsyncOpenAI, config: Config) -> None:
        super().__init__(client, config)
        self._images: set[str] = set()
        """Ids of uploaded images (``Conversation.uploads`` holds documents and these):
        the code interpreter's container gets the documents only."""

    async def end_session(self, conv: Conversation) -> None:
        """Delete what the session made: its vector store, every file it uploaded and its
        conversation. Each deletion is tried on its own: one that fails is logged and
        does not keep the others; nothing is raised (the tab is closing)."""
        store_id, conv.vector_store_id = conv.vector_store_id, None
        file_ids = list(conv.uploads.values())
        conv.uploads.clear()
        conversation_id, conv.conversation_id = conv.conversation_id, None
        conv.previous_response_id = None
        steps: list[tuple[str, Any]] = []
        if store_id:
            steps.append((f"vector store {store_id}", lambda: self.client.vector_stores.delete(store_id)))
        self._images.difference_update(file_ids)
        for file_id in file_ids:
            steps.append((f"file {file_id}", lambda file_id=file_id: self.client.files.delete(file_id)))
        if conversation_id:
            steps.append((f"conversation {conversation_id}", lambda: self.client.conversations.delete(conversation_id)))
        for what, delete in steps:
            try:
                await delete()
            except openai.NotFoundError:
                pass  # gone already (expired, or deleted elsewhere)
            except Exception as exc:
                log.warning("could not delete %s: %s", what, describe_error(exc, has_text=False)[1])

    # -- files -------------------------------------------------------------------

    def _uses(self, tool_type: str) -> bool:
        return any(t.type == tool_type for t in self.config.tools)

    async def _content(self, conv: Conversation, text: str, attachments: Sequence[Attachment], notices: list[str]) -> Any:
        """A user message's content with its files, in the forms this API takes.

        An image is an ``input_image`` with the image as a data URL rather than an
        uploaded file's id: there is nothing to delete when the session ends, no upload
        before the answer can start, and every Responses-compatible server takes it.
        The cost is the image's bytes in the request that carries it (once: the
        conversation keeps the item; again only when an unknown history is reseeded).
        An image over ``IMAGE_INLINE_MAX`` is uploaded instead (purpose ``vision``,
        deleted with the session), so a message of large images stays under the
        request size cap.

        A document goes to the session's vector store when ``file_search`` is
        configured and takes its type (``SEARCHABLE_TYPES``; uploaded once, reused by
        SHA-256); otherwise it is an ``input_file`` with the file as a data URL: the
        API reads a PDF as text and page images, a spreadsheet (CSV) through its
        spreadsheet step and a text or code file as text, which covers every document
        type the app accepts (``attachments.DOCUMENT_TYPES``). With ``code_interpreter`` a
        document is uploaded too and becomes a file of its container
        (``session_tools``). What could not be done is added to ``notices``.
        """
        if not attachments:
            return text
        parts: list[dict[str, Any]] = [{"type": "input_text", "text": text}] if text else []
        searches, interprets = self._uses("file_search"), self._uses("code_interpreter")
        for attachment in attachments:
            if attachment.kind == "image" and attachment.size <= IMAGE_INLINE_MAX:
                parts.append({"type": "input_image", "image_url": attachment.data_url()})
                continue
            if attachment.kind == "image":
                image_id = await self._upload(conv, attachment, "vision")
                self._images.add(image_id)
                parts.append({"type": "input_image", "file_id": image_id})
                continue
            searched = searches and attachment.mime in SEARCHABLE_TYPES
            file_id = await self._upload(conv, attachment, UPLOAD_PURPOSE) if searched or interprets else None
            if searched and file_id is not None:
                await self._index(conv, attachment, file_id, notices)
            else:
                parts.append({"type": "input_file", "filename": wire_name(attachment), "file_data": attachment.data_url()})
        if not parts:  # only searched documents: the message names them, as the page does
            parts = [{"type": "input_text", "text": "\n\n".join(f"[file: {a.name}]" for a in attachments)}]
        return parts

    async def _upload(self, conv: Conversation, attachment: Attachment, purpose: Literal["assistants", "vision"]) -> str:
        """The provider's id of this file: uploaded on its first use in the session."""
        file_id = conv.uploads.get(attachment.sha256)
        if file_id is None:
            made = await self.client.files.create(
                file=(wire_name(attachment), attachment.read(), attachment.mime), purpose=purpose, expires_after=FILE_EXPIRY
            )
            file_id = conv.uploads[attachment.sha256] = made.id
        return file_id

    async def _index(self, conv: Conversation, attachment: Attachment, file_id: str, notices: list[str]) -> None:
        """Add an uploaded document to the session's vector store (created on the first),
        and wait until it can be searched."""
        if conv.vector_store_id is None:
            store = await self.client.vector_stores.create(name="streamchat session", expires_after=STORE_EXPIRY)
            conv.vector_store_id = store.id
        try:
            added = await self.client.vector_stores.files.create_and_poll(
                file_id=file_id, vector_store_id=conv.vector_store_id, max_wait_seconds=INDEX_WAIT
            )
        except TimeoutError:
            notices.append(f"{attachment.name} is still being indexed: the search may not find it yet.")
            return
        if added.status != "completed":
            why = added.last_error.message if added.last_error else added.status
            notices.append(f"{attachment.name} could not be indexed for search ({why}).")

    async def _history_items(self, conv: Conversation, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The visible history as input items, one per ``visible`` message (marks count
        items), each user message with its files in the same forms as a new message's,
        so a reseeded chat keeps its images and documents. Only files with the bytes of
        one this session was given (``Conversation.attached``) are sent again: a path in
        the history the browser sends is not trusted. Any other file (a saved chat after
        a restart, a file gone from the upload cache) keeps only its ``[file: name]``
        label."""
        items: list[dict[str, Any]] = []
        for message, refs in visible_with_files(history):
            content: Any = message["content"]
            files = [f for f in (self._attached_again(conv, path, name) for path, name in refs) if f is not None]
            if files:
                content = await self._content(conv, content, files, [])
            items.append({"type": "message", "role": message["role"], "content": content})
        return items

    def _attached_again(self, conv: Conversation, path: str, name: str) -> Attachment | None:
        """The file at ``path`` if its bytes are those of a file attached in this session
        (Gradio may show, and send back, a copy in its cache rather than the upload
        itself). ``inspect`` reads only a regular file within the size limit."""
        if not conv.attached:
            return None
        try:
            found = inspect(path, self.config.attachments, name=name)
        except AttachmentError:
            return None
        return found if found.sha256 in conv.attached else None

    async def _download(self, files: Sequence[ProducedFile], ctx: TurnContext, done: set[str]) -> AsyncIterator[StreamEvent]:
        """Download each file the answer cites from a container, once a turn, into
        ``ctx.outputs`` (not at all when it is None): recorded through the tap, shown as
        a ``file`` event. A failed download is a notice, not a failed turn."""
        if ctx.outputs is None:
            return
        for produced in files:
            if produced.file_id in done:
                continue
            done.add(produced.file_id)
            name = _safe_part(produced.filename, "file")
            path = ctx.outputs / _safe_part(produced.file_id, "download") / name
            try:
                content = await self.client.containers.files.content.retrieve(
                    produced.file_id, container_id=produced.container_id
                )
                data = content.content
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            except (openai.APIError, OSError) as exc:
                if isinstance(exc, openai.NotFoundError):
                    why = "the server does not have it (404)."
                else:
                    why = describe_error(exc, has_text=False)[1] if isinstance(exc, openai.APIError) else str(exc)
                yield ev.notice(f"Could not download {name}: {why}")
                continue
            ctx.tap.output_file(produced.file_id, name, data)
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            yield StreamEvent("file", name, url=str(path), extra={"mime": mime})

    # -- conversation state --------------------------------------------------------

    async def _sync(
        self, conv: Conversation, history: list[dict[str, Any]], seen: list[dict[str, str]], key: str
    ) -> list[dict[str, Any]]:
        """Bring the remote state in line with the history the page shows, before the
        model is asked. Returns input items the first request must carry before the
        user's message (chaining without the Conversations API, from an unknown history).

        Known history (one this session answered, or the empty chat): back to the
        state that answered it — the items after it are deleted from the conversation,
        or the chain continues from the response that produced it. Unknown history (a
        saved chat reopened, an app restart, an edit of an answer): a new conversation
        seeded with the visible history (``_history_items``); the old one is deleted.
        """
        if key == conv.head and (conv.conversation_id or conv.chain_only):
            return []
        mark = conv.marks.get(key)
        if conv.chain_only:
            conv.previous_response_id = mark.response_id if mark else None
            return [] if mark or not seen else await self._history_items(conv, history)
        if mark is not None and conv.conversation_id and mark.conversation_id == conv.conversation_id:
            with contextlib.suppress(openai.NotFoundError):  # gone (expired): seeded anew below
                await self._truncate(conv, mark.items)
                return []
        old = conv.conversation_id
        items = await self._history_items(conv, history)
        try:
            conv.conversation_id = await self._seeded(items)
        except openai.NotFoundError:  # a server without the Conversations API: chain responses
            conv.conversation_id, conv.chain_only, conv.previous_response_id = None, True, None
            conv.marks.clear()
            return items
        conv.items = len(seen)
        conv.marks = {k: m for k, m in conv.marks.items() if m.conversation_id not in (old, None)}
        if old:
            with contextlib.suppress(openai.APIError):
                await self.client.conversations.delete(old)
        return []

    async def _seeded(self, items: list[dict[str, Any]]) -> str:
        """A new conversation holding ``items`` (in batches: the API takes 20 items a call)."""
        batch: Any = items
        first, rest = batch[:SEED_BATCH], batch[SEED_BATCH:]
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
        conv.attached.update(a.sha256 for a in ctx.attachments)  # what a reseeded history may send again
        earlier = await self._sync(conv, history, seen, key)
        conv.marks.setdefault(key, self._here(conv))
        conv.head = None  # until this turn's answer is settled
        notices: list[str] = []
        try:
            content = await self._content(conv, message, ctx.attachments, notices)
        except AttachmentError as exc:  # the file went away since it was checked
            yield ev.turn_end("failed", str(exc))
            return
        for line in notices:
            yield ev.notice(line)
        documents = [f for f in conv.uploads.values() if f not in self._images]
        tools = session_tools(tool_specs(self.config), conv, documents)
        request_input: Any = [*earlier, {"role": "user", "content": content}]
        fetched: set[str] = set()
        for round_ in range(ctx.max_rounds + 1):
            params: dict[str, Any] = {
                "model": self.config.model,
                "instructions": self.config.instructions,
                "input": request_input,
                "stream": True,
            }
            if tools:
                params["tools"] = tools
            # Left out otherwise: the interpreter's logs and images, the files a search found.
            include = [INCLUDE[t["type"]] for t in tools if t["type"] in INCLUDE]
            if include:
                params["include"] = include
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
            async for event in self._download(list(adapter.produced.values()), ctx, fetched):
                yield event
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
