"""Chat Completions (`chat.completions.create(stream=True)`), for any OpenAI-compatible
server: vLLM, Ollama, llama.cpp, LM Studio.

Stateless: the history comes from the ChatInterface, as the page shows it; the tool
calls of kept turns are re-sent from the session's memory of them. Files: images go as
``image_url`` parts (data URLs), small text documents as text parts
(``attachments.inline_text``); this API takes no other file, so a PDF or a larger document
is refused before any request (``refuse``). An earlier message's files are sent again
the same way while Gradio's copy of them still exists, else as their ``[file: name]`` label. Tool loop: ``tool_calls`` deltas
assembled by ``index`` (parallel calls included) → ``tool`` messages → the next request.
A stream is complete only with a ``finish_reason`` *and* ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .. import attachments as att
from .. import events as ev
from ..attachments import Attachment, Limits
from ..events import StreamEvent, TurnStatus
from ..sse import RawEvent
from .base import Adapter, Backend, Conversation, Mark, ToolCall, TurnContext, error_message, raw_events, round_limit, run_calls
from .history import content_files, content_words, history_key, visible_with_sources

_FINISH: dict[str, TurnStatus] = {
    "stop": "completed",
    "tool_calls": "completed",
    "function_call": "completed",
    "length": "incomplete",
    "content_filter": "incomplete",
}


class ChatAdapter(Adapter):
    def __init__(self) -> None:
        super().__init__()
        self.finish_reason: str | None = None
        self._calls: dict[int, dict[str, str]] = {}
        self._written = 0

    def handle(self, raw: RawEvent) -> list[StreamEvent]:
        data = raw.data
        if raw.is_done:
            self._done()
            return []
        if not isinstance(data, dict):
            return self.malformed(raw)
        if data.get("error"):
            message = error_message(data)
            self.finish("failed", message)
            return [ev.error(message)]
        out: list[StreamEvent] = []
        # A chunk with `choices: []` carries usage (or, first, content-filter results).
        for choice in data.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                out.append(StreamEvent("reasoning", reasoning))
            if delta.get("content"):  # null on role and tool-call chunks
                out.append(ev.text(delta["content"]))
                self._written += len(delta["content"])
            if delta.get("refusal"):  # "" on the first chunk of a refusal, null otherwise
                out.append(ev.refusal(delta["refusal"]))
            for note in delta.get("annotations") or []:  # search models' url_citation
                out.extend(self._citation(note))
            for call in delta.get("tool_calls") or []:
                out.extend(self._tool_delta(call))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def _citation(self, note: dict[str, Any]) -> list[StreamEvent]:
        cite = note.get("url_citation") if isinstance(note, dict) else None
        if not isinstance(cite, dict) or not cite.get("url"):
            return []
        at = cite.get("end_index")
        extra = {"back": self._written - at} if isinstance(at, int) and 0 <= at < self._written else {}
        return [StreamEvent("citation", cite.get("title") or cite["url"], url=cite["url"], extra=extra)]

    def _tool_delta(self, call: dict[str, Any]) -> list[StreamEvent]:
        index = call.get("index", len(self._calls))
        fn = call.get("function") or {}
        out: list[StreamEvent] = []
        state = self._calls.get(index)
        if state is None:
            state = {"id": call.get("id") or f"call_{index}", "name": fn.get("name") or "", "arguments": ""}
            self._calls[index] = state
            out.append(StreamEvent("tool_call", call_id=state["id"], name=state["name"] or "?"))
        if fn.get("arguments"):
            state["arguments"] += fn["arguments"]
            out.append(StreamEvent("tool_args", fn["arguments"], call_id=state["id"]))
        return out

    def _done(self) -> None:
        if self.finish_reason is None:
            return  # [DONE] without a finish_reason: the answer did not finish
        status = _FINISH.get(self.finish_reason, "completed")
        message = "" if status == "completed" else f"The answer was cut short ({self.finish_reason})."
        if self.damaged and status == "completed":
            # This API sends no final text to repair from: what a damaged event held is gone.
            status, message = "incomplete", "Part of the answer was lost: the server sent a damaged event."
        for index in sorted(self._calls):
            state = self._calls[index]
            self.calls.append(ToolCall(state["id"], state["name"], state["arguments"]))
        self.finish(status, message)

    def done_events(self) -> list[StreamEvent]:
        return [StreamEvent("tool_done", c.arguments, call_id=c.call_id, name=c.name) for c in self.calls]


def tool_specs(config: Any) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in config.tools
        if t.type == "function"
    ]


def file_part(attachment: Attachment) -> dict[str, Any]:
    """One checked file as a content part: an image as ``image_url`` (a data URL), a
    text document as the fixed text wrapper the replay server recognises."""
    if attachment.kind == "image":
        return {"type": "image_url", "image_url": {"url": attachment.data_url()}}
    return {"type": "text", "text": att.inline_text(attachment)}


def refusal(attachments: tuple[Attachment, ...], limits: Limits) -> str | None:
    """Why Chat Completions cannot take one of these files (it has no file input)."""
    for a in attachments:
        if a.kind == "image" or (a.is_text and a.size <= limits.inline_bytes):
            continue
        what = "a PDF" if a.mime == "application/pdf" else f"{a.size / 1024:.0f} KiB of text"
        return (
            f"{a.name}: the Chat Completions API takes no files, so {what} cannot be sent here "
            f"(images can, and text files up to {limits.inline_text_kb:g} KiB, as text). Nothing was sent."
        )
    return None


def user_message(text: str, attachments: tuple[Attachment, ...]) -> dict[str, Any]:
    """The user's message: its files' parts, then its text (plain text without files)."""
    if not attachments:
        return {"role": "user", "content": text}
    parts = [file_part(a) for a in attachments]
    if text:
        parts.append({"type": "text", "text": text})
    return {"role": "user", "content": parts}


def _earlier_files(content: Any, limits: Limits) -> tuple[Attachment, ...] | None:
    """An earlier user message's files, checked again, when each can still be sent as it
    was; None when one cannot (gone from Gradio's cache, or not a file this API takes):
    then the message is its text, labels included, as before files were sent."""
    files = content_files(content)
    if not files:
        return None
    try:
        found = tuple(att.inspect(path, limits, name=name) for name, path in files)
    except att.AttachmentError:
        return None
    return None if refusal(found, limits) is not None else found


def history_messages(
    history: list[dict[str, Any]], marks: dict[str, Mark] | None = None, limits: Limits | None = None
) -> list[dict[str, Any]]:
    """The ChatInterface history as chat messages, in every shape Gradio sends it
    (``history.visible``: the app's tool and status bubbles are not the model's words).

    A kept turn whose tool calls this session made gets them back, as the assistant
    ``tool_calls`` message and ``tool`` messages before its answer, so the model sees
    what it saw then; a turn from elsewhere (a saved chat after a restart) is its text.
    With ``limits``, a user message's files go again as they went then (``user_message``).
    """
    shown = visible_with_sources(history)
    seen = [m for m, _ in shown]
    out: list[dict[str, Any]] = []
    for i, (message, content) in enumerate(shown):
        if message["role"] == "assistant" and marks:
            mark = marks.get(history_key(seen[: i + 1]))
            if mark is not None:
                out += mark.exchange
        files = _earlier_files(content, limits) if limits is not None and message["role"] == "user" else None
        if files:
            out.append(user_message(content_words(content), files))
        else:
            out.append({"role": message["role"], "content": message["content"]})
    return out


class ChatBackend(Backend):
    api = "chat"

    def refuse(self, attachments: tuple[Attachment, ...]) -> str | None:
        return refusal(attachments, self.config.attachments)

    async def turn(
        self, conv: Conversation, message: str, history: list[dict[str, Any]], ctx: TurnContext
    ) -> AsyncIterator[StreamEvent]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.config.instructions}]
        messages += history_messages(history, conv.marks, self.config.attachments)
        messages.append(user_message(message, ctx.attachments))
        exchange: list[dict[str, Any]] = []  # this turn's tool calls, kept with its answer
        tools = tool_specs(self.config)
        for round_ in range(ctx.max_rounds + 1):
            params: dict[str, Any] = {
                "model": self.config.model,
                "messages": messages,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            if tools:
                params["tools"] = tools
            if self.config.temperature is not None:
                params["temperature"] = self.config.temperature
            params.update(self.token_cap(ctx))
            adapter = ChatAdapter()
            stream = raw_events(self.client.chat.completions.with_streaming_response.create(**params), ctx.tap)
            async for raw in stream:
                for event in adapter.handle(raw):
                    yield event
            for event in adapter.done_events():
                yield event
            if adapter.status != "completed" or not adapter.calls:
                conv.pending = Mark(exchange=exchange)
                yield ev.turn_end(adapter.status or "interrupted", adapter.message)
                return
            if round_ == ctx.max_rounds:
                break
            calls = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in adapter.calls
            ]
            exchange.append({"role": "assistant", "content": None, "tool_calls": calls})
            results: list[tuple[ToolCall, str]] = []
            async for event in run_calls(adapter.calls, ctx, results):
                yield event
            exchange += [{"role": "tool", "tool_call_id": c.call_id, "content": out} for c, out in results]
            messages += exchange[-1 - len(results) :]
        conv.pending = Mark(exchange=exchange)
        for event in round_limit(ctx):
            yield event
