"""Streams in each API's wire format, made up rather than captured.

The tests' fake server, the bundled (``source: synthetic``) recordings and the
benchmarks all build their streams here, so there is one idea of what each provider
sends. Each builder returns the raw events of one HTTP stream, in order; ``timed``
gives them offsets.

The field sets and event order follow published captures of the live API (listed in
tests/fixtures/real/SOURCES.md), and every event validates against the `openai` SDK's
own type for it (tests/test_wire_sdk_types.py). They are still made up: ids, times,
usage and texts are invented, so nothing here is "exact" beyond its shape.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..sse import RawEvent

CREATED = 1795000000
"""The ``created_at`` of every made-up object: a fixed time keeps generated files
identical from one run to the next."""

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


def reset_ids() -> None:
    global _ids
    _ids = itertools.count(1)


@dataclass
class FunctionCall:
    name: str
    arguments: str
    call_id: str = field(default_factory=lambda: new_id("call"))
    chunks: int = 3
    """How many argument deltas the arguments are split into."""


@dataclass
class CodeInterpreterCall:
    """A code interpreter run: the code (streamed in ``chunks`` deltas) and its outputs."""

    code: str
    logs: str = ""
    images: Sequence[str] = ()
    """Responses: image URLs; Assistants: file ids (that API gives no URL)."""
    call_id: str = field(default_factory=lambda: new_id("ci"))
    chunks: int = 4


@dataclass
class FileSearchCall:
    """A file search: its queries and the files it found (``(file_id, filename, score)``)."""

    queries: Sequence[str] = ()
    results: Sequence[tuple[str, str, float]] = ()
    call_id: str = field(default_factory=lambda: new_id("fs"))


@dataclass
class WebSearchCall:
    """A web search (Responses only): its query and the sources it read."""

    query: str
    sources: Sequence[str] = ()
    call_id: str = field(default_factory=lambda: new_id("ws"))


BuiltinCall = CodeInterpreterCall | FileSearchCall | WebSearchCall


def split_text(text: str, size: int = 4) -> list[str]:
    """Cut text into deltas of ``size`` characters (multibyte characters stay whole:
    the cut is by character, the way providers emit tokens)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _split(value: str, n: int) -> list[str]:
    n = max(1, min(n, len(value) or 1))
    step = -(-len(value) // n) if value else 1
    return [value[i : i + step] for i in range(0, len(value), step)] or [""]


def _note_positions(deltas: Sequence[str], annotations: Sequence[dict[str, Any]], key: Any) -> dict[int, list[int]]:
    """Which delta each annotation follows: the one in which its position (``key(note)``,
    a character offset in the whole text) is reached; the last delta when it has none.
    Providers send an annotation once the text it refers to has streamed."""
    ends, total = [], 0
    for d in deltas:
        total += len(d)
        ends.append(total)
    out: dict[int, list[int]] = {}
    for n, note in enumerate(annotations):
        pos = key(note)
        at = len(deltas) - 1
        if isinstance(pos, int):
            at = next((i for i, end in enumerate(ends) if end >= pos), at)
        out.setdefault(at, []).append(n)
    return out


def timed(events: Iterable[RawEvent], *, start: float = 0.0, step: float = 0.02) -> list[tuple[float, RawEvent]]:
    return [(round(start + i * step, 4), e) for i, e in enumerate(events)]


# -- Responses --------------------------------------------------------------------


def responses_stream(
    deltas: Sequence[str] = (),
    *,
    model: str = "gpt-5-mini",
    response_id: str | None = None,
    end: str | None = "completed",
    calls: Sequence[FunctionCall] = (),
    reasoning: Sequence[str] = (),
    summary_parts: Sequence[Sequence[str]] = (),
    builtins: Sequence[BuiltinCall] = (),
    annotations: Sequence[dict[str, Any]] = (),
    incomplete_reason: str = "max_output_tokens",
    error: dict[str, Any] | None = None,
    nested_error: bool = False,
    refusal: Sequence[str] = (),
) -> list[RawEvent]:
    """One ``responses.create(stream=True)`` stream.

    Output items come in this order: a reasoning item (``reasoning``: the deltas of one
    summary part, or ``summary_parts``: several parts), the built-in tool calls
    (``builtins``), the function calls, then the message. An annotation is sent after
    the delta that reaches its ``index`` (or ``end_index``).

    ``end``: ``completed``, ``incomplete``, ``failed``, ``error`` (an ``error`` event),
    or None (the stream stops before its terminal event). ``refusal``: the message is a
    refusal content part streamed in these deltas (``response.refusal.delta``).
    """
    rid = response_id or new_id("resp")
    seq = itertools.count()
    now = CREATED

    def ev(kind: str, **data: Any) -> RawEvent:
        return RawEvent(kind, {"type": kind, "sequence_number": next(seq), **data})

    def response(status: str, output: list[Any], **more: Any) -> dict[str, Any]:
        # The fields a live response object carries (the SDK requires
        # parallel_tool_calls, tool_choice and tools), with the API's defaults.
        return {
            "id": rid,
            "object": "response",
            "created_at": now,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "max_output_tokens": None,
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": None,
            "user": None,
            "metadata": {},
            **more,
        }

    out: list[RawEvent] = [
        ev("response.created", response=response("in_progress", [])),
        ev("response.in_progress", response=response("in_progress", [])),
    ]
    items: list[dict[str, Any]] = []
    index = 0
    parts = [list(p) for p in summary_parts] or ([list(reasoning)] if reasoning else [])
    if parts:
        rs_id = new_id("rs")
        item = {"id": rs_id, "type": "reasoning", "summary": []}
        out.append(ev("response.output_item.added", output_index=index, item=item))
        summary = []
        for k, deltas_k in enumerate(parts):
            where = {"item_id": rs_id, "output_index": index, "summary_index": k}
            out.append(ev("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""}))
            for d in deltas_k:
                out.append(ev("response.reasoning_summary_text.delta", **where, delta=d))
            full = "".join(deltas_k)
            out.append(ev("response.reasoning_summary_text.done", **where, text=full))
            out.append(ev("response.reasoning_summary_part.done", **where, part={"type": "summary_text", "text": full}))
            summary.append({"type": "summary_text", "text": full})
        done = {**item, "summary": summary}
        out.append(ev("response.output_item.done", output_index=index, item=done))
        items.append(done)
        index += 1
    for builtin in builtins:
        for kind, data in _responses_builtin(builtin, index):
            out.append(ev(kind, **data))
        items.append(out[-1].data["item"])
        index += 1
    for call in calls:
        fc_id = new_id("fc")
        item = {
            "id": fc_id,
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call.call_id,
            "name": call.name,
        }
        out.append(ev("response.output_item.added", output_index=index, item=item))
        for d in _split(call.arguments, call.chunks):
            out.append(ev("response.function_call_arguments.delta", item_id=fc_id, output_index=index, delta=d))
        out.append(ev("response.function_call_arguments.done", item_id=fc_id, output_index=index, arguments=call.arguments))
        done = {**item, "status": "completed", "arguments": call.arguments}
        out.append(ev("response.output_item.done", output_index=index, item=done))
        items.append(done)
        index += 1
    if refusal:
        msg_id = new_id("msg")
        item = {"id": msg_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        where = {"item_id": msg_id, "output_index": index, "content_index": 0}
        out.append(ev("response.output_item.added", output_index=index, item=item))
        out.append(ev("response.content_part.added", **where, part={"type": "refusal", "refusal": ""}))
        for d in refusal:
            out.append(ev("response.refusal.delta", **where, delta=d))
        full = "".join(refusal)
        out.append(ev("response.refusal.done", **where, refusal=full))
        out.append(ev("response.content_part.done", **where, part={"type": "refusal", "refusal": full}))
        done = {**item, "status": "completed", "content": [{"type": "refusal", "refusal": full}]}
        out.append(ev("response.output_item.done", output_index=index, item=done))
        items.append(done)
    if deltas:
        msg_id = new_id("msg")
        item = {"id": msg_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        out.append(ev("response.output_item.added", output_index=index, item=item))
        part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
        out.append(ev("response.content_part.added", item_id=msg_id, output_index=index, content_index=0, part=part))
        after = _note_positions(deltas, annotations, lambda note: note.get("index", note.get("end_index")))
        for i, d in enumerate(deltas):
            out.append(
                ev("response.output_text.delta", item_id=msg_id, output_index=index, content_index=0, delta=d, logprobs=[])
            )
            if end is None and i == len(deltas) - 1:
                return out  # cut off mid-answer
            for n in after.get(i, []):
                out.append(
                    ev(
                        "response.output_text.annotation.added",
                        item_id=msg_id,
                        output_index=index,
                        content_index=0,
                        annotation_index=n,
                        annotation=annotations[n],
                    )
                )
        full = "".join(deltas)
        out.append(ev("response.output_text.done", item_id=msg_id, output_index=index, content_index=0, text=full, logprobs=[]))
        done_part = {"type": "output_text", "text": full, "annotations": list(annotations)}
        out.append(ev("response.content_part.done", item_id=msg_id, output_index=index, content_index=0, part=done_part))
        done = {**item, "status": "completed", "content": [done_part]}
        out.append(ev("response.output_item.done", output_index=index, item=done))
        items.append(done)
    if end == "completed":
        out.append(ev("response.completed", response=response("completed", items, usage=_usage())))
    elif end == "incomplete":
        details = {"reason": incomplete_reason}
        out.append(ev("response.incomplete", response=response("incomplete", items, incomplete_details=details)))
    elif end == "failed":
        err = error or {"code": "server_error", "message": "The model failed to finish."}
        out.append(ev("response.failed", response=response("failed", items, error=err)))
    elif end == "error":
        err = error or {"code": "rate_limit_exceeded", "message": "Rate limit reached during the stream."}
        payload = {"error": {"type": "invalid_request_error", **err}} if nested_error else {**err, "param": None}
        out.append(ev("error", **payload))
    return out


def _responses_builtin(call: BuiltinCall, index: int) -> list[tuple[str, dict[str, Any]]]:
    """The events of one built-in tool call's output item, ``output_item.done`` last."""
    where = {"item_id": call.call_id, "output_index": index}
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(call, CodeInterpreterCall):
        item: dict[str, Any] = {
            "id": call.call_id,
            "type": "code_interpreter_call",
            "status": "in_progress",
            "code": "",
            "container_id": "cntr_synthetic",
            "outputs": None,
        }
        out.append(("response.output_item.added", {"output_index": index, "item": item}))
        out.append(("response.code_interpreter_call.in_progress", where))
        for piece in _split(call.code, call.chunks):
            out.append(("response.code_interpreter_call_code.delta", {**where, "delta": piece}))
        out.append(("response.code_interpreter_call_code.done", {**where, "code": call.code}))
        out.append(("response.code_interpreter_call.interpreting", where))
        out.append(("response.code_interpreter_call.completed", where))
        outputs: list[dict[str, Any]] = [{"type": "logs", "logs": call.logs}] if call.logs else []
        outputs += [{"type": "image", "url": url} for url in call.images]
        done = {**item, "status": "completed", "code": call.code, "outputs": outputs}
    elif isinstance(call, FileSearchCall):
        item = {"id": call.call_id, "type": "file_search_call", "status": "in_progress", "queries": [], "results": None}
        out.append(("response.output_item.added", {"output_index": index, "item": item}))
        out.append(("response.file_search_call.in_progress", where))
        out.append(("response.file_search_call.searching", where))
        out.append(("response.file_search_call.completed", where))
        results: list[dict[str, Any]] = [
            {"file_id": fid, "filename": name, "score": score, "attributes": {}, "text": None}
            for fid, name, score in call.results
        ]
        done = {**item, "status": "completed", "queries": list(call.queries), "results": results or None}
    else:
        item = {"id": call.call_id, "type": "web_search_call", "status": "in_progress", "action": {"type": "search"}}
        out.append(("response.output_item.added", {"output_index": index, "item": item}))
        out.append(("response.web_search_call.in_progress", where))
        out.append(("response.web_search_call.searching", where))
        out.append(("response.web_search_call.completed", where))
        action = {"type": "search", "query": call.query, "sources": [{"type": "url", "url": u} for u in call.sources]}
        done = {**item, "status": "completed", "action": action}
    out.append(("response.output_item.done", {"output_index": index, "item": done}))
    return out


def _usage() -> dict[str, Any]:
    return {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 34,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 46,
    }


# -- Assistants -------------------------------------------------------------------


def assistants_stream(
    deltas: Sequence[str] = (),
    *,
    thread_id: str = "thread_synthetic",
    assistant_id: str = "asst_synthetic",
    model: str = "gpt-5-mini",
    instructions: str = "",
    run_id: str | None = None,
    end: str | None = "completed",
    calls: Sequence[FunctionCall] = (),
    builtins: Sequence[CodeInterpreterCall | FileSearchCall] = (),
    annotations: Sequence[dict[str, Any]] = (),
    continuing: bool = False,
    event_lines: bool = True,
) -> list[RawEvent]:
    """One run stream (``runs.create(stream=True)``, or with ``continuing`` the stream
    ``submit_tool_outputs(stream=True)`` opens). ``end``: ``completed``, ``failed``,
    ``incomplete``, ``cancelled``, ``requires_action`` (needs ``calls``), ``error`` or
    None. ``event_lines=False`` drops the ``event:`` lines, as some servers do.

    ``builtins`` run in one ``tool_calls`` step before the message. An annotation
    whose ``text`` (a ``【4:0†source】`` marker, a ``sandbox:`` path) is in the answer
    gets its ``start_index``/``end_index`` and comes with the delta that ends it."""
    rid = run_id or new_id("run")
    now = CREATED

    def run(status: str, **more: Any) -> dict[str, Any]:
        # The run object as the live API streams it (every field the SDK requires).
        return {
            "id": rid,
            "object": "thread.run",
            "created_at": now,
            "assistant_id": assistant_id,
            "thread_id": thread_id,
            "status": status,
            "started_at": None if status == "queued" else now,
            "expires_at": now + 600,
            "cancelled_at": None,
            "failed_at": None,
            "completed_at": None,
            "required_action": None,
            "last_error": None,
            "model": model,
            "instructions": instructions,
            "tools": [],
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "max_completion_tokens": None,
            "max_prompt_tokens": None,
            "truncation_strategy": {"type": "auto", "last_messages": None},
            "incomplete_details": None,
            "usage": None,
            "response_format": "auto",
            "tool_choice": "auto",
            "parallel_tool_calls": True,
            **more,
        }

    def step_fields(step_id: str, kind: str, status: str) -> dict[str, Any]:
        return {
            "id": step_id,
            "object": "thread.run.step",
            "created_at": now,
            "run_id": rid,
            "assistant_id": assistant_id,
            "thread_id": thread_id,
            "type": kind,
            "status": status,
            "cancelled_at": None,
            "completed_at": now if status == "completed" else None,
            "expires_at": now + 600,
            "failed_at": None,
            "last_error": None,
            "usage": None,
        }

    out: list[tuple[str, Any]] = []
    if not continuing:
        out.append(("thread.run.created", run("queued")))
    out.append(("thread.run.queued", run("queued")))  # a continued run is queued again, too
    out.append(("thread.run.in_progress", run("in_progress")))
    if builtins:
        out += _assistants_builtin_step(builtins, step_fields)
    if calls:
        step_id = new_id("step")
        step = step_fields(step_id, "tool_calls", "in_progress")
        out.append(("thread.run.step.created", {**step, "step_details": {"type": "tool_calls", "tool_calls": []}}))
        out.append(("thread.run.step.in_progress", {**step, "step_details": {"type": "tool_calls", "tool_calls": []}}))
        for i, call in enumerate(calls):
            for j, piece in enumerate(_split(call.arguments, call.chunks)):
                tc: dict[str, Any] = {"index": i, "type": "function", "function": {"arguments": piece}}
                if j == 0:
                    tc = {
                        "index": i,
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": piece, "output": None},
                    }
                delta = {
                    "id": step_id,
                    "object": "thread.run.step.delta",
                    "delta": {"step_details": {"type": "tool_calls", "tool_calls": [tc]}},
                }
                out.append(("thread.run.step.delta", delta))
        tool_calls = [
            {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
        action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": tool_calls}}
        out.append(("thread.run.requires_action", run("requires_action", required_action=action)))
        return _assistant_frames(out, end_done=True, event_lines=event_lines)
    if deltas:
        msg_id = new_id("msg")
        message = {
            "id": msg_id,
            "object": "thread.message",
            "created_at": now,
            "assistant_id": assistant_id,
            "thread_id": thread_id,
            "run_id": rid,
            "status": "in_progress",
            "incomplete_details": None,
            "incomplete_at": None,
            "completed_at": None,
            "role": "assistant",
            "content": [],
            "attachments": [],
            "metadata": {},
        }
        step_id = new_id("step")
        details = {"type": "message_creation", "message_creation": {"message_id": msg_id}}
        step = {**step_fields(step_id, "message_creation", "in_progress"), "step_details": details}
        out.append(("thread.run.step.created", step))
        out.append(("thread.run.step.in_progress", step))
        out.append(("thread.message.created", message))
        out.append(("thread.message.in_progress", message))
        notes = _assistant_notes("".join(deltas), annotations)
        after = _note_positions(deltas, notes, lambda note: note.get("end_index"))
        for i, d in enumerate(deltas):
            text: dict[str, Any] = {"value": d}
            if i in after:
                text["annotations"] = [notes[n] for n in after[i]]
            out.append(
                (
                    "thread.message.delta",
                    {
                        "id": msg_id,
                        "object": "thread.message.delta",
                        "delta": {"content": [{"index": 0, "type": "text", "text": text}]},
                    },
                )
            )
            if end is None and i == len(deltas) - 1:
                return _assistant_frames(out, end_done=False, event_lines=event_lines)
        full = "".join(deltas)
        out.append(
            (
                "thread.message.completed",
                {
                    **message,
                    "status": "completed",
                    "completed_at": now,
                    "content": [{"type": "text", "text": {"value": full, "annotations": notes}}],
                },
            )
        )
        out.append(
            ("thread.run.step.completed", {**step_fields(step_id, "message_creation", "completed"), "step_details": details})
        )
    if end == "completed":
        out.append(("thread.run.completed", run("completed", completed_at=now, expires_at=None)))
    elif end == "failed":
        error = {"code": "server_error", "message": "The run failed on the server."}
        out.append(("thread.run.failed", run("failed", failed_at=now, expires_at=None, last_error=error)))
    elif end == "incomplete":
        out.append(("thread.run.incomplete", run("incomplete", incomplete_details={"reason": "max_completion_tokens"})))
    elif end == "cancelled":
        out.append(("thread.run.cancelled", run("cancelled", cancelled_at=now, expires_at=None)))
    elif end == "error":
        out.append(
            (
                "error",
                {"code": "server_error", "message": "Something went wrong mid-stream.", "param": None, "type": "server_error"},
            )
        )
        return _assistant_frames(out, end_done=False, event_lines=event_lines)
    if end is None:
        return _assistant_frames(out, end_done=False, event_lines=event_lines)
    return _assistant_frames(out, end_done=True, event_lines=event_lines)


def _assistant_notes(full: str, annotations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out, searched = [], 0
    for n, note in enumerate(annotations):
        note = {"index": n, **note}
        marker = note.get("text")
        if isinstance(marker, str) and "start_index" not in note and marker in full[searched:]:
            start = full.index(marker, searched)
            searched = start + len(marker)
            note["start_index"], note["end_index"] = start, searched
        out.append(note)
    return out


def _assistants_builtin_step(builtins: Sequence[CodeInterpreterCall | FileSearchCall], step_fields: Any) -> list[tuple[str, Any]]:
    """A ``tool_calls`` run step the assistant runs itself: code interpreter input and
    logs arrive as step deltas, the full details with ``thread.run.step.completed``."""
    step_id = new_id("step")
    step = {**step_fields(step_id, "tool_calls", "in_progress"), "step_details": {"type": "tool_calls", "tool_calls": []}}
    out: list[tuple[str, Any]] = [("thread.run.step.created", step), ("thread.run.step.in_progress", step)]

    def delta(tc: dict[str, Any]) -> tuple[str, Any]:
        body = {"step_details": {"type": "tool_calls", "tool_calls": [tc]}}
        return ("thread.run.step.delta", {"id": step_id, "object": "thread.run.step.delta", "delta": body})

    full: list[dict[str, Any]] = []
    for i, call in enumerate(builtins):
        if isinstance(call, CodeInterpreterCall):
            first = {"index": i, "id": call.call_id, "type": "code_interpreter", "code_interpreter": {"input": "", "outputs": []}}
            out.append(delta(first))
            for piece in _split(call.code, call.chunks):
                out.append(delta({"index": i, "type": "code_interpreter", "code_interpreter": {"input": piece}}))
            outputs: list[dict[str, Any]] = [{"index": 0, "type": "logs", "logs": call.logs}] if call.logs else []
            outputs += [{"index": len(outputs) + k, "type": "image", "image": {"file_id": f}} for k, f in enumerate(call.images)]
            if outputs:
                out.append(delta({"index": i, "type": "code_interpreter", "code_interpreter": {"outputs": outputs}}))
            final = [{k: v for k, v in o.items() if k != "index"} for o in outputs]
            full.append(
                {"id": call.call_id, "type": "code_interpreter", "code_interpreter": {"input": call.code, "outputs": final}}
            )
        else:
            out.append(delta({"index": i, "id": call.call_id, "type": "file_search", "file_search": {}}))
            results = [{"file_id": fid, "file_name": name, "score": score} for fid, name, score in call.results]
            ranking = {"ranker": "default_2024_08_21", "score_threshold": 0.0}
            full.append(
                {"id": call.call_id, "type": "file_search", "file_search": {"ranking_options": ranking, "results": results}}
            )
    done = {**step_fields(step_id, "tool_calls", "completed"), "step_details": {"type": "tool_calls", "tool_calls": full}}
    out.append(("thread.run.step.completed", done))
    return out


def _assistant_frames(pairs: list[tuple[str, Any]], *, end_done: bool, event_lines: bool) -> list[RawEvent]:
    out = [RawEvent(name if event_lines else None, data) for name, data in pairs]
    if end_done:
        out.append(RawEvent("done" if event_lines else None, "[DONE]"))
    return out


# -- Chat Completions -------------------------------------------------------------


def chat_stream(
    deltas: Sequence[str] = (),
    *,
    model: str = "gpt-5-mini",
    completion_id: str | None = None,
    finish_reason: str | None = "stop",
    calls: Sequence[FunctionCall] = (),
    reasoning: Sequence[str] = (),
    annotations: Sequence[dict[str, Any]] = (),
    usage: bool = True,
    done: bool = True,
    error: dict[str, Any] | None = None,
    filter_chunk: bool = False,
    refusal: Sequence[str] = (),
) -> list[RawEvent]:
    """One ``chat.completions.create(stream=True)`` stream. ``finish_reason=None`` with
    ``done=False`` is a stream cut off mid-answer; ``error`` sends an error chunk.
    ``annotations`` (``url_citation``s, as search models send them) follow the text in
    a chunk of their own. ``refusal``: deltas of ``delta.refusal`` (the first chunk then
    has ``content: null, refusal: ""``, as the live API sends it)."""
    cid = completion_id or new_id("chatcmpl")
    now = CREATED

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **more: Any) -> RawEvent:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return RawEvent(
            None,
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": now,
                "model": model,
                "system_fingerprint": None,
                "choices": choices,
                **more,
            },
        )

    out: list[RawEvent] = []
    if filter_chunk:
        # Azure-style first chunk: no choices, prompt filter results only.
        out.append(chunk(None, prompt_filter_results=[{"prompt_index": 0, "content_filter_results": {}}]))
    if refusal:
        out.append(chunk({"role": "assistant", "content": None, "refusal": ""}))
        out += [chunk({"refusal": r}) for r in refusal]
    else:
        out.append(chunk({"role": "assistant", "content": "", "refusal": None}))
    for r in reasoning:
        out.append(chunk({"reasoning_content": r, "content": None}))
    for d in deltas:
        out.append(chunk({"content": d}))
    if annotations:
        out.append(chunk({"annotations": list(annotations)}))
    for i, call in enumerate(calls):
        pieces = _split(call.arguments, call.chunks)
        first = {"index": i, "id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        out.append(chunk({"content": None, "tool_calls": [first]}))
        for piece in pieces:
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    if error is not None:
        out.append(RawEvent(None, {"error": error}))
        return out
    if finish_reason is not None:
        out.append(chunk({}, finish_reason))
        if usage:
            out.append(chunk(None, usage={"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}))
    if done:
        out.append(RawEvent(None, "[DONE]"))
    return out


def paced(
    events: Sequence[RawEvent],
    *,
    start: float = 0.0,
    first_token: float = 0.45,
    per_delta: float = 0.035,
    seed: int = 0,
) -> list[tuple[float, RawEvent]]:
    """Offsets that look like a live model: bookkeeping events at once, a pause before
    the first token, then deltas at a jittered rate."""
    import random

    rng = random.Random(seed)
    out: list[tuple[float, RawEvent]] = []
    t = start
    seen_delta = False
    for raw in events:
        is_delta = _is_delta(raw)
        if is_delta and not seen_delta:
            t += first_token
            seen_delta = True
        elif is_delta:
            t += per_delta * rng.uniform(0.5, 1.5)
        else:
            t += 0.002
        out.append((round(t, 4), raw))
    return out


def _is_delta(raw: RawEvent) -> bool:
    data = raw.data
    if not isinstance(data, dict):
        return False
    if raw.event and raw.event.endswith(".delta"):
        return True
    kind = data.get("type") or data.get("object") or ""
    if kind.endswith(".delta"):
        return True
    return any(
        (c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("tool_calls") for c in data.get("choices") or []
    )


# -- whole recordings -------------------------------------------------------------


@dataclass
class SynthTurn:
    """One made-up turn of a recording: the user's message and the turn's streams."""

    user: str
    streams: list[list[tuple[float, RawEvent]]]
    status: str | None = "completed"
    """The end object's status; None writes no end object (a cut-off turn)."""
    tool_outputs: list[tuple[str, str, float]] = field(default_factory=list)
    """``(call_id, output, t)``: each is written before the first stream that starts after it."""
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)
    """``(name, type, bytes)`` of the files sent with the message, kept whole (as
    ``--record-attachments`` keeps them) so replay can show them."""


def attachment_line(name: str, mime: str, data: bytes) -> dict[str, Any]:
    """An attachment as a turn line keeps it, its bytes included."""
    import base64
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    encoded = base64.b64encode(data).decode("ascii")
    return {"name": name, "type": mime, "size": len(data), "sha256": digest, "data": encoded}


def recording_lines(
    api: str,
    turns: Sequence[SynthTurn],
    *,
    title: str,
    description: str | None = None,
    model: str = "gpt-5-mini",
    created: str = "2026-11-25T00:00:00Z",
) -> list[dict[str, Any]]:
    """A whole synthetic recording as JSON objects (docs/recording-format.md), its
    header saying ``source: synthetic``."""
    from ..recording import FORMAT, VERSION

    head: dict[str, Any] = {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "api": api,
        "model": model,
        "config_sha256": None,
        "created": created,
        "app_version": "synthetic",
        "source": "synthetic",
        "title": title,
    }
    if description is not None:
        head["description"] = description
    out: list[dict[str, Any]] = [head]
    for n, turn in enumerate(turns):
        turn_line: dict[str, Any] = {"kind": "turn", "turn": n, "user": turn.user}
        if turn.attachments:
            turn_line["attachments"] = [attachment_line(*a) for a in turn.attachments]
        out.append(turn_line)
        outputs = sorted(turn.tool_outputs, key=lambda o: o[2])
        end = 0.0
        for s, stream in enumerate(turn.streams):
            for t, raw in stream:
                line: dict[str, Any] = {"kind": "event", "turn": n, "stream": s, "t": t}
                if raw.event is not None:
                    line["event"] = raw.event
                line["data"] = raw.data
                out.append(line)
                end = max(end, t)
            if s + 1 < len(turn.streams):
                # the tool outputs of this round: after stream s, before stream s+1
                next_start = turn.streams[s + 1][0][0] if turn.streams[s + 1] else float("inf")
                while outputs and outputs[0][2] <= next_start:
                    call_id, output, t = outputs.pop(0)
                    out.append({"kind": "tool_output", "turn": n, "t": t, "call_id": call_id, "output": output})
        if outputs:
            raise ValueError(f"turn {n}: a tool output is timed after the turn's last stream started")
        if turn.status is not None:
            out.append({"kind": "end", "turn": n, "t": round(end + 0.001, 4), "status": turn.status})
    return out


def dump_lines(objs: Sequence[dict[str, Any]]) -> str:
    """The recording's text: one compact JSON object a line."""
    return "".join(json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n" for o in objs)
