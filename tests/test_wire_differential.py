"""The app against the `openai` SDK itself, on the same bytes over real HTTP.

Two sets of streams go through the same machinery (``wire_diff``):

- streams we own, which run everywhere: the synthetic builders' shapes, and streams
  built here after what real captures showed (refusals, reasoning summaries, function
  calls, errors, incomplete ends, a lost or damaged delta, an unknown event type);
- the real captures listed in ``tests/fixtures/real/SOURCES.md``, where present in the
  captures directory (``$STREAMCHAT_REAL_CAPTURES``, else ``../shared/captures/real/``
  beside the checkout), each checked against its SHA-256 first.

Where the app and the SDK differ, the app is fixed, or the case says why the SDK's view
is not the one to show.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Fake
from wire_diff import app_view, compare, sdk_view

from streamchat.importer import read_capture
from streamchat.replayapi import Script
from streamchat.sse import RawEvent
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript
from streamchat.transcript import EMPTY_LINE, REFUSAL_LINE

TEXT = "The quick brown fox jumps over the lazy dog."


def script(events: list[RawEvent], **faults: Any) -> FaultScript:
    return FaultScript(events=synth.timed(events, step=0), **faults)


def titles(view: Any) -> list[str]:
    return [m["metadata"]["title"] for m in view.transcript.snapshot() if m.get("metadata")]


# -- streams we own -----------------------------------------------------------------


@dataclass
class Owned:
    id: str
    api: str
    events: list[RawEvent]
    status: str
    text: str
    faults: dict[str, Any] | None = None


def _without(events: list[RawEvent], kind: str, nth: int) -> list[RawEvent]:
    """The stream with its ``nth`` event of type ``kind`` left out (lost in transit)."""
    seen = -1
    out = []
    for raw in events:
        data = raw.data if isinstance(raw.data, dict) else {}
        if (data.get("type") or raw.event) == kind or (kind == "thread.message.delta" and raw.event == kind):
            seen += 1
            if seen == nth:
                continue
        out.append(raw)
    return out


def _status_incomplete_in_completed() -> list[RawEvent]:
    """A compatible server's ``response.completed`` whose response says ``incomplete``."""
    events = synth.responses_stream(synth.split_text(TEXT, 5))
    last = events[-1]
    assert isinstance(last.data, dict)
    response = {**last.data["response"], "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    return [*events[:-1], RawEvent(last.event, {**last.data, "response": response})]


def _with_unknown(events: list[RawEvent]) -> list[RawEvent]:
    unknown = RawEvent("response.future_thing.added", {"type": "response.future_thing.added", "sequence_number": 999})
    return [*events[:3], unknown, *events[3:]]


def _owned() -> list[Owned]:
    deltas = synth.split_text(TEXT, 5)
    fc = [synth.FunctionCall("get_time", '{"zone": "Asia/Tokyo"}'), synth.FunctionCall("roll", '{"sides": 20}')]
    url = {"type": "url_citation", "start_index": 4, "end_index": 9, "url": "https://example.test/fox", "title": "Fox"}
    note = {"type": "file_citation", "text": "【4:0†source】", "file_citation": {"file_id": "file_1"}}
    r, a, c = synth.responses_stream, synth.assistants_stream, synth.chat_stream
    return [
        Owned("responses-text", "responses", r(deltas), "completed", TEXT),
        Owned("responses-calls", "responses", r(calls=fc), "completed", ""),
        Owned("responses-reasoning", "responses", r(deltas, summary_parts=[["Think", "ing"], ["more"]]), "completed", TEXT),
        Owned("responses-web-citation", "responses", r(deltas, annotations=[url]), "completed", TEXT),
        Owned(
            "responses-refusal", "responses", r(refusal=["I can't ", "help with that."]), "completed", "I can't help with that."
        ),
        Owned("responses-incomplete", "responses", r(deltas, end="incomplete"), "incomplete", TEXT),
        Owned("responses-completed-says-incomplete", "responses", _status_incomplete_in_completed(), "incomplete", TEXT),
        Owned("responses-lost-delta", "responses", _without(r(deltas), "response.output_text.delta", 2), "completed", TEXT),
        Owned(
            "responses-lost-tail-and-done",
            "responses",
            [
                e
                for e in _without(r(deltas), "response.output_text.delta", len(deltas) - 1)
                if not _is(e, "response.output_text.done")
            ],
            "completed",
            TEXT,
        ),
        Owned("responses-unknown-event", "responses", _with_unknown(r(deltas)), "completed", TEXT),
        Owned("responses-failed", "responses", r(deltas, end="failed"), "failed", TEXT),
        Owned("responses-error-event", "responses", r(deltas, end="error"), "failed", TEXT),
        Owned("assistants-text", "assistants", a(deltas), "completed", TEXT),
        Owned("assistants-requires-action", "assistants", a(calls=fc, end="requires_action"), "completed", ""),
        Owned(
            "assistants-file-citation",
            "assistants",
            a(synth.split_text("See 【4:0†source】 here.", 4), annotations=[note]),
            "completed",
            "See  here.",
        ),
        Owned("assistants-lost-delta", "assistants", _without(a(deltas), "thread.message.delta", 1), "completed", TEXT),
        Owned("assistants-failed", "assistants", a(deltas, end="failed"), "failed", TEXT),
        Owned("assistants-incomplete", "assistants", a(deltas, end="incomplete"), "incomplete", TEXT),
        Owned("chat-text", "chat", c(deltas), "completed", TEXT),
        Owned("chat-calls", "chat", c(calls=fc, finish_reason="tool_calls"), "completed", ""),
        Owned("chat-refusal", "chat", c(refusal=["I can't ", "help with that."]), "completed", "I can't help with that."),
        Owned("chat-length", "chat", c(deltas, finish_reason="length"), "incomplete", TEXT),
        Owned("chat-reasoning", "chat", c(deltas, reasoning=["Hm", "m."]), "completed", TEXT),
    ]


def _is(raw: RawEvent, kind: str) -> bool:
    return isinstance(raw.data, dict) and raw.data.get("type") == kind


OWNED = _owned()


@pytest.mark.parametrize("case", OWNED, ids=[c.id for c in OWNED])
async def test_owned_stream_app_matches_the_sdk(case: Owned, fake: Fake) -> None:
    app = await app_view(case.api, fake, script(case.events))
    sdk = await sdk_view(case.api, fake, script(case.events))
    assert app.status == case.status
    assert app.text == case.text
    assert compare(app, sdk, citations=case.api != "assistants") == []


async def test_refusals_are_shown_and_marked(fake: Fake) -> None:
    for api, events in (
        ("chat", synth.chat_stream(refusal=["No, ", "sorry."])),
        ("responses", synth.responses_stream(refusal=["No, ", "sorry."])),
    ):
        app = await app_view(api, fake, script(events))
        assert app.text == "No, sorry." and app.status == "completed"
        assert titles(app)[-1] == REFUSAL_LINE


async def test_an_empty_answer_says_so(fake: Fake) -> None:
    for api, events in (
        ("responses", synth.responses_stream([])),
        ("chat", synth.chat_stream([])),
        ("assistants", synth.assistants_stream([])),
    ):
        app = await app_view(api, fake, script(events))
        assert app.text == "" and app.status == "completed"
        assert titles(app) == [EMPTY_LINE], api


async def test_a_damaged_delta_is_repaired_where_the_api_sends_the_final_text(fake: Fake) -> None:
    """The SDK cannot parse a damaged event at all (it raises): the app skips it, says
    so, and repairs the answer from the final text; with Chat it says text was lost."""
    for api, build in (("responses", synth.responses_stream), ("assistants", synth.assistants_stream)):
        events = build(synth.split_text(TEXT, 5))
        at = next(i for i, e in enumerate(events) if "delta" in str(e.event)) + 1
        app = await app_view(api, fake, script(events, corrupt_at=frozenset({at})))
        sdk = await sdk_view(api, fake, script(events, corrupt_at=frozenset({at})))
        assert app.text == TEXT and app.status == "completed", api
        assert sdk.status.startswith("raised:"), "the SDK accepted a damaged event?"
        assert any("not valid JSON" in t for t in titles(app))
    events = synth.chat_stream(synth.split_text(TEXT, 5))
    app = await app_view("chat", fake, script(events, corrupt_at=frozenset({2})))
    assert app.status == "incomplete" and app.text != TEXT
    assert any("Part of the answer was lost" in t for t in titles(app)), titles(app)


async def test_an_unknown_event_type_is_recorded_and_skipped(fake: Fake) -> None:
    from streamchat.backends.responses import ResponsesAdapter

    events = _with_unknown(synth.responses_stream(synth.split_text(TEXT, 5)))
    adapter = ResponsesAdapter()
    for raw in events:
        adapter.handle(raw)
    assert adapter.unknown == ["response.future_thing.added"] and adapter.status == "completed"
    app = await app_view("responses", fake, script(events))
    assert app.text == TEXT and titles(app) == []


# -- real captures ------------------------------------------------------------------

SOURCES = Path(__file__).parent / "fixtures" / "real" / "SOURCES.md"


def captures_dir() -> Path:
    given = os.environ.get("STREAMCHAT_REAL_CAPTURES")
    return Path(given) if given else ROOT.parent / "shared" / "captures" / "real"


@dataclass(frozen=True)
class Capture:
    id: int
    api: str
    repository: str
    path: str
    commit: str
    license: str
    sha256: str
    exchange: int
    status: str
    shows: str
    text_chars: int
    text_sha16: str

    @property
    def file(self) -> Path:
        return captures_dir() / self.repository.split("/")[1] / self.path


def manifest() -> list[Capture]:
    rows = []
    for line in SOURCES.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) != 12 or not cells[0].isdigit():
            continue
        rows.append(
            Capture(
                int(cells[0]), cells[1], cells[2], cells[3], cells[4], cells[5], cells[6],
                int(cells[7]), cells[8], cells[9], int(cells[10]), cells[11],
            )
        )  # fmt: skip
    return rows


CAPTURES = manifest()


def test_the_manifest_lists_at_least_twenty_captures_of_every_kind() -> None:
    assert len(CAPTURES) >= 20
    assert {c.api for c in CAPTURES} == {"responses", "assistants", "chat"}
    shows = " ".join(c.shows for c in CAPTURES)
    for kind in (
        "text",
        "function-call",
        "reasoning-summary",
        "refusal",
        "error",
        "code-interpreter",
        "file-search",
        "web-search",
    ):
        assert kind in shows, kind
    for c in CAPTURES:
        assert len(c.sha256) == 64 and len(c.commit) == 40 and c.license in ("MIT", "Apache-2.0"), c
    assert len({(c.path, c.exchange) for c in CAPTURES}) == len(CAPTURES)


def served(capture: Capture, data: bytes) -> Script:
    _, exchanges = read_capture(data)
    exchange = exchanges[capture.exchange]
    if exchange.streaming:
        return FaultScript(events=[], raw_tail=exchange.body)  # the captured bytes, as they are
    error = (json.loads(exchange.body) or {}).get("error") if exchange.body else None
    return Script(status=exchange.status, error=error)


@pytest.mark.parametrize("capture", CAPTURES, ids=[f"{c.id}-{Path(c.path).stem[:40]}" for c in CAPTURES])
async def test_real_capture(capture: Capture, fake: Fake) -> None:
    if not capture.file.is_file():
        pytest.skip(f"real capture not present: put it at {capture.file} (captures directory {captures_dir()})")
    data = capture.file.read_bytes()
    assert hashlib.sha256(data).hexdigest() == capture.sha256, f"{capture.file} is not the capture SOURCES.md lists"
    app = await app_view(capture.api, fake, served(capture, data))
    sdk = await sdk_view(capture.api, fake, served(capture, data))
    assert app.status == capture.status
    assert len(app.text) == capture.text_chars
    assert hashlib.sha256(app.text.encode()).hexdigest()[:16] == capture.text_sha16
    if "refusal" in capture.shows:
        assert app.transcript is not None and app.transcript.refused
    if "function-call" in capture.shows:
        assert app.calls
    if "citation" in capture.shows:
        assert app.citations
    if "reasoning-summary" in capture.shows:
        assert any("Thought" in t for t in titles(app))
    if "error" in capture.shows:
        assert app.status == "failed" and sdk.status.startswith("raised:")
    assert compare(app, sdk, citations=capture.api != "assistants") == []


async def test_an_unknown_event_type_is_kept_in_the_recording(fake: Fake, tmp_path: Path) -> None:
    from conftest import make_settings, run_turn

    from streamchat.recording import load_recording
    from streamchat.session import Runtime

    fake.push(script(_with_unknown(synth.responses_stream(synth.split_text(TEXT, 5)))))
    runtime = Runtime(make_settings("responses", url=fake.url, record_dir=tmp_path))
    session = runtime.new_session()
    values = await run_turn(session, "hello")
    await session.close()
    assert runtime.client is not None
    await runtime.client.close()
    assert values[-1] == TEXT and session.last_status == "completed"
    (path,) = tmp_path.glob("*.jsonl")
    kinds = [
        raw.data.get("type") for s in load_recording(path).turns[0].streams for _, raw in s.events if isinstance(raw.data, dict)
    ]
    assert "response.future_thing.added" in kinds
