"""Chat Completions (`chat.completions.create(stream=True)`), for any OpenAI-compatible
server: vLLM, Ollama, llama.cpp, LM Studio.

Stateless: the history comes from the ChatInterface, as the page shows it; the tool
calls of kept turns are re-sent from the session's memory of them. Tool loop: ``tool_calls`` deltas
assembled by ``index`` (parallel calls included) → ``tool`` messages → the next request.
A stream is complete only with a ``finish_reason`` *and* ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .. import events as ev
from ..events import StreamEvent, TurnStatus
from ..sse import RawEvent
from .base import Adapter, Backend, Conversation, Mark, ToolCall, TurnContext, error_message, raw_events, round_limit, run_calls
from .history import history_key, visible

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


def history_messages(history: list[dict[str, Any]], marks: dict[str, Mark] | None = None) -> list[dict[str, Any]]:
    """The ChatInterface history as chat messages, in every shape Gradio sends it
    (``history.visible``: the app's tool and status bubbles are not the model's words).

    A kept turn whose tool calls this session made gets them back, as the assistant
    ``tool_calls`` message and ``tool`` messages before its answer, so the model sees
    what it saw then; a turn from elsewhere (a saved chat after a restart) is its text.
    """
    seen = visible(history)
    out: list[dict[str, Any]] = []
    for i, message in enumerate(seen):
        if message["role"] == "assistant" and marks:
            mark = marks.get(history_key(seen[: i + 1]))
            if mark is not None:
                out += mark.exchange
        out.append({"role": message["role"], "content": message["content"]})
    return out


class ChatBackend(Backend):
    api = "chat"

    async def turn(
        self, conv: Conversation, message: str, history: list[dict[str, Any]], ctx: TurnContext
    ) -> AsyncIterator[StreamEvent]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.config.instructions}]
        messages += history_messages(history, conv.marks)
        messages.append({"role": "user", "content": message})
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
