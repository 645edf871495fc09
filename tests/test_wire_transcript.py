"""The transcript's side of issue 11, unit by unit: the provider's final text replaces
what damaged deltas showed, the waiting line is replaced by the answer, a notice never
cuts the answer in two, and the terminal chat prints an answer that grew below one."""

from __future__ import annotations

import io

from streamchat import events as ev
from streamchat.cli import _Printer
from streamchat.events import StreamEvent
from streamchat.transcript import EMPTY_LINE, REFUSAL_LINE, Transcript


def feed(*events: StreamEvent) -> Transcript:
    transcript = Transcript()
    for event in events:
        transcript.handle_event(event)
    return transcript


def test_final_text_replaces_a_damaged_part_after_earlier_text() -> None:
    t = feed(
        ev.text("Intro. "),
        ev.text("The "),
        ev.notice("skipped"),
        ev.text("k brown fox."),
        StreamEvent("text_final", "The quick brown fox.", extra={"shown": "The k brown fox."}),
        ev.turn_end("completed"),
    )
    assert t.text == "Intro. The quick brown fox." and t.repaired == 1
    kinds = [m.get("metadata", {}).get("title", "answer") for m in t.snapshot()]
    assert kinds == ["answer", "ℹ️ skipped"]  # the notice below the whole answer


def test_a_part_that_cannot_be_found_is_said_not_guessed() -> None:
    t = feed(ev.text("abc"), StreamEvent("text_final", "xyz", extra={"shown": "qqq"}), ev.turn_end("completed"))
    assert t.text == "abc" and t.repaired == 0
    assert any("damaged in transit" in m["metadata"]["title"] for m in t.snapshot() if m.get("metadata"))


def test_waiting_line_is_replaced_by_the_answer() -> None:
    t = feed(ev.waiting("Waiting for the server…"))
    assert t.snapshot()[0]["metadata"]["title"] == "⏳ Waiting for the server…"
    t.handle_event(ev.waiting("Rate limited: retrying in 20 s (attempt 2 of 3)…"))
    assert [m["metadata"]["title"] for m in t.snapshot()] == ["⏳ Rate limited: retrying in 20 s (attempt 2 of 3)…"]
    t.handle_event(ev.text("Hi"))
    t.handle_event(ev.turn_end("completed"))
    assert t.value() == "Hi"


def test_refusal_and_empty_lines() -> None:
    refused = feed(ev.refusal("No."), ev.turn_end("completed"))
    assert refused.text == "No." and refused.snapshot()[-1]["metadata"]["title"] == REFUSAL_LINE
    empty = feed(ev.turn_end("completed"))
    assert [m["metadata"]["title"] for m in empty.snapshot()] == [EMPTY_LINE]
    said = feed(ev.notice("Type a message first."), ev.turn_end("completed"))
    assert EMPTY_LINE not in str(said.snapshot())  # a notice already says what happened
    cut = feed(ev.turn_end("interrupted"))
    assert EMPTY_LINE not in str(cut.snapshot())


def test_the_terminal_prints_text_that_grew_below_a_notice() -> None:
    out = io.StringIO()
    printer = _Printer(out)
    t = feed(ev.text("Hello "))
    printer.update(t.snapshot())
    t.handle_event(ev.notice("skipped"))
    printer.update(t.snapshot())
    t.handle_event(ev.text("world."))
    printer.update(t.snapshot())
    t.handle_event(ev.turn_end("completed"))
    printer.update(t.snapshot(), final=True)
    text = out.getvalue()
    assert text.startswith("Hello world.") and text.count("[ℹ️ skipped]") == 1
