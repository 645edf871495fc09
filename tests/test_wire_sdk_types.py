"""Every event our streams carry is one the `openai` SDK accepts: the bundled
recordings, and what the fake server sends over real HTTP for every shape the synthetic
builders make (the union member its type or event name selects; see wire_sdk.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import ROOT, TEST_KEY, Fake
from wire_sdk import sdk_errors

from streamchat.backends.base import NullTap, raw_events
from streamchat.sse import RawEvent
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript

BUNDLED = sorted((ROOT / "recordings").glob("*.jsonl"))


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_every_bundled_event_validates_against_the_sdk_type(path: Path) -> None:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    api = lines[0]["api"]
    checked = 0
    for n, line in enumerate(lines, 1):
        if line.get("kind") != "event":
            continue
        problems = sdk_errors(api, RawEvent(line.get("event"), line["data"]))
        assert problems == [], f"{path.name}:{n}: {problems}"
        checked += 1
    assert checked > 5


def _shapes() -> list[tuple[str, str, list[RawEvent]]]:
    fc = [synth.FunctionCall("get_time", '{"zone": "UTC"}'), synth.FunctionCall("roll", '{"sides": 6}')]
    ci = synth.CodeInterpreterCall("print(1)", logs="1\n", images=["https://example.test/a.png"])
    fs = synth.FileSearchCall(["q"], [("file_1", "notes.md", 0.9)])
    ws = synth.WebSearchCall("weather", ["https://example.test/"])
    url = {"type": "url_citation", "start_index": 0, "end_index": 5, "url": "https://example.test/", "title": "Ex"}
    text = synth.split_text("Hello there, world.", 4)
    out: list[tuple[str, str, list[RawEvent]]] = []
    r = synth.responses_stream
    # Left out on purpose, like the corrupt frames of test_faults: the nested error
    # event ({"type": "error", "error": {…}}) some compatible servers send, which the SDK's
    # ResponseErrorEvent does not describe; the app is tested to tolerate it.
    for name, kw in {
        "text": {},
        "calls": {"calls": fc},
        "reasoning": {"summary_parts": [["Think", "ing."], ["More."]]},
        "builtins": {"builtins": [ci, fs, ws]},
        "annotated": {"annotations": [url]},
        "incomplete": {"end": "incomplete"},
        "failed": {"end": "failed"},
        "error": {"end": "error"},
        "cut": {"end": None},
    }.items():
        out.append(("responses", name, r(text, **kw)))
    out.append(("responses", "refusal", synth.responses_stream(refusal=["I can", "not help."])))
    a = synth.assistants_stream
    note = {"type": "file_citation", "text": "【4:0†source】", "file_citation": {"file_id": "file_1"}}
    for name, kw in {
        "text": {},
        "requires-action": {"calls": fc, "end": "requires_action"},
        "continuing": {"continuing": True},
        "builtins": {"builtins": [synth.CodeInterpreterCall("print(1)", logs="1\n", images=["file_img"]), fs]},
        "annotated": {"annotations": [note]},
        "failed": {"end": "failed"},
        "incomplete": {"end": "incomplete"},
        "cancelled": {"end": "cancelled"},
        "error": {"end": "error"},
        "no-event-lines": {"event_lines": False},
    }.items():
        deltas = synth.split_text("See 【4:0†source】 here.", 4) if name == "annotated" else text
        out.append(("assistants", name, a(deltas, **kw)))
    c = synth.chat_stream
    for name, kw in {
        "text": {},
        "calls": {"calls": fc, "finish_reason": "tool_calls"},
        "reasoning": {"reasoning": ["Hm", "m."]},
        "annotated": {"annotations": [{"type": "url_citation", "url_citation": url}]},
        "length": {"finish_reason": "length"},
        "filter-chunk": {"filter_chunk": True},
        "error": {"error": {"message": "Boom.", "type": "server_error", "code": None}},
        "refusal": {"refusal": ["I can", "not help."]},
    }.items():
        out.append(("chat", name, c([] if name == "refusal" else text, **kw)))
    return out


SHAPES = _shapes()
REQUEST: dict[str, Any] = {
    "responses": lambda c: c.responses.with_streaming_response.create(model="m", input="hi", stream=True),
    "chat": lambda c: c.chat.completions.with_streaming_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    ),
}


@pytest.mark.parametrize(("api", "name", "events"), SHAPES, ids=[f"{a}-{n}" for a, n, _ in SHAPES])
async def test_every_event_the_fake_server_sends_validates(api: str, name: str, events: list[RawEvent], fake: Fake) -> None:
    fake.push(FaultScript(events=synth.timed(events, step=0)))
    client = openai.AsyncOpenAI(api_key=TEST_KEY, base_url=fake.url, max_retries=0)
    if api == "assistants":
        thread = await client.beta.threads.create()
        await client.beta.threads.messages.create(thread.id, role="user", content="hi")
        request = client.beta.threads.runs.with_streaming_response.create(thread.id, assistant_id="asst_x", stream=True)
    else:
        request = REQUEST[api](client)
    received = [raw async for raw in raw_events(request, NullTap())]
    await client.close()
    assert len(received) == len(events)  # what was sent arrived, over real HTTP
    for n, raw in enumerate(received):
        assert sdk_errors(api, raw) == [], f"event {n} ({raw.event or ''}): {sdk_errors(api, raw)}"


def test_the_validator_rejects_what_the_sdk_rejects() -> None:
    """The judge can fail: a run without ``instructions`` or a response without
    ``parallel_tool_calls`` (what the bundled files used to carry) is refused."""
    run = next(e for e in synth.assistants_stream(["x"]) if e.event == "thread.run.created")
    assert isinstance(run.data, dict)
    broken = {k: v for k, v in run.data.items() if k != "instructions"}
    assert any("instructions" in p for p in sdk_errors("assistants", RawEvent("thread.run.created", broken)))
    created = synth.responses_stream(["x"])[0]
    assert isinstance(created.data, dict)
    response = {k: v for k, v in created.data["response"].items() if k != "parallel_tool_calls"}
    assert sdk_errors("responses", RawEvent(None, {**created.data, "response": response}))
    assert sdk_errors("responses", RawEvent(None, {"type": "response.no_such_event"}))
