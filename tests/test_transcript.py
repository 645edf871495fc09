"""Transcript: normalized events in, chat messages out (pure, no I/O)."""

from __future__ import annotations

from streamchat import events as ev
from streamchat.events import StreamEvent
from streamchat.transcript import STATUS_LINES, Transcript


def feed(*events: StreamEvent, clock: list[float] | None = None) -> Transcript:
    transcript = Transcript(clock=(lambda: clock[0]) if clock is not None else None)
    for event in events:
        transcript.handle_event(event)
    return transcript


def titles(transcript: Transcript) -> list[str]:
    return [m["metadata"]["title"] for m in transcript.snapshot() if "metadata" in m]


# -- text ---------------------------------------------------------------------------


def test_text_deltas_accumulate_into_one_plain_answer() -> None:
    transcript = feed(ev.text("こん"), ev.text("にちは"), ev.text(""), ev.text(" 🎉"), ev.turn_end("completed"))
    assert transcript.text == "こんにちは 🎉"
    assert transcript.snapshot() == [{"role": "assistant", "content": "こんにちは 🎉"}]
    assert transcript.value() == "こんにちは 🎉"
    assert transcript.status == "completed"


def test_text_grows_between_snapshots() -> None:
    transcript = Transcript()
    seen = []
    for piece in ["a", "b", "c"]:
        transcript.handle_event(ev.text(piece))
        seen.append(transcript.value())
    assert seen == ["a", "ab", "abc"]


def test_nothing_yet_is_an_empty_string() -> None:
    assert Transcript().value() == ""
    assert Transcript().snapshot() == []
    assert feed(ev.text("")).value() == ""


# -- tools ----------------------------------------------------------------------------


def test_local_tool_bubble_stays_pending_until_its_output() -> None:
    clock = [10.0]
    transcript = feed(StreamEvent("tool_call", call_id="c1", name="get_time"), clock=clock)
    [bubble] = transcript.snapshot()
    pending_title = bubble["metadata"]["title"]
    assert "get_time" in pending_title
    assert bubble["metadata"] == {"title": pending_title, "status": "pending", "id": "c1"}

    transcript.handle_event(StreamEvent("tool_args", '{"timezone":', call_id="c1"))
    transcript.handle_event(StreamEvent("tool_args", ' "Asia/Tokyo"}', call_id="c1"))
    transcript.handle_event(StreamEvent("tool_done", '{"timezone": "Asia/Tokyo"}', call_id="c1", name="get_time"))
    [bubble] = transcript.snapshot()
    assert bubble["metadata"]["status"] == "pending"  # the function has not run yet
    assert bubble["content"] == '```json\n{"timezone": "Asia/Tokyo"}\n```'

    clock[0] = 11.5
    transcript.handle_event(StreamEvent("tool_output", "12:00 JST", call_id="c1"))
    transcript.handle_event(ev.text("It is noon."))
    transcript.handle_event(ev.turn_end("completed"))
    tool, answer = transcript.value()
    done_title = tool["metadata"]["title"]
    assert "get_time" in done_title and done_title != pending_title
    assert tool["metadata"] == {"title": done_title, "status": "done", "id": "c1", "duration": 1.5}
    assert tool["content"].endswith("**Result**\n```text\n12:00 JST\n```")
    assert answer == {"role": "assistant", "content": "It is noon."}


def test_tool_done_gives_arguments_when_no_delta_did() -> None:
    transcript = feed(
        StreamEvent("tool_call", call_id="c1", name="roll_dice"),
        StreamEvent("tool_done", '{"sides": 6}', call_id="c1", name="roll_dice"),
    )
    assert transcript.snapshot()[0]["content"] == '```json\n{"sides": 6}\n```'


def test_server_tool_closes_on_its_done_event() -> None:
    transcript = feed(
        StreamEvent("tool_call", call_id="ci", name="code_interpreter", extra={"server": True}),
        StreamEvent("tool_args", "print(1 + 1)", call_id="ci"),
        StreamEvent("tool_output", "2", call_id="ci"),
    )
    [running] = transcript.snapshot()
    assert running["metadata"]["status"] == "pending"  # the provider may send more output
    transcript.handle_event(StreamEvent("tool_done", call_id="ci", name="code_interpreter"))
    [done] = transcript.snapshot()
    assert done["metadata"]["status"] == "done"
    assert done["metadata"]["title"] != running["metadata"]["title"]
    assert done["content"].startswith("```python\nprint(1 + 1)\n```")
    assert "2" in done["content"].split("```python\nprint(1 + 1)\n```")[1]


def test_parallel_calls_do_not_mix() -> None:
    transcript = feed(
        StreamEvent("tool_call", call_id="a", name="one"),
        StreamEvent("tool_call", call_id="b", name="two"),
        StreamEvent("tool_args", "A", call_id="a"),
        StreamEvent("tool_args", "B", call_id="b"),
        StreamEvent("tool_output", "out-b", call_id="b"),
    )
    first, second = transcript.snapshot()
    assert first["content"] == "```json\nA\n```" and first["metadata"]["status"] == "pending"
    assert "B" in second["content"] and "out-b" in second["content"] and second["metadata"]["status"] == "done"


def test_parallel_calls_of_one_tool_get_distinct_titles() -> None:
    transcript = feed(
        StreamEvent("tool_call", call_id="a", name="get_time"),
        StreamEvent("tool_call", call_id="b", name="get_time"),
        StreamEvent("tool_call", call_id="c", name="web_search", extra={"server": True}),
        StreamEvent("tool_call", call_id="d", name="web_search", extra={"server": True}),
        StreamEvent("tool_output", "09:00", call_id="b"),
        StreamEvent("tool_done", call_id="d", name="web_search"),
    )
    assert titles(transcript) == [
        "🛠️ Using tool get_time",
        "🛠️ Used tool get_time #2",
        "🌐 Searching the web",
        "🌐 Searched the web #2",
    ]


def test_event_for_an_unseen_call_opens_a_bubble() -> None:
    transcript = feed(StreamEvent("tool_args", "{}", call_id="ghost"))
    [bubble] = transcript.snapshot()
    assert bubble["metadata"]["id"] == "ghost" and bubble["metadata"]["status"] == "pending"


def test_pending_tool_is_marked_unfinished_when_the_turn_breaks_off() -> None:
    transcript = feed(StreamEvent("tool_call", call_id="c1", name="slow"), ev.turn_end("interrupted"))
    tool, status = transcript.snapshot()
    assert tool["metadata"]["status"] == "done"
    assert tool["metadata"]["title"].endswith("slow (did not finish)")
    assert status["metadata"]["title"] == STATUS_LINES["interrupted"]


# -- reasoning ----------------------------------------------------------------------


def test_thinking_bubble_settles_when_the_answer_starts() -> None:
    clock = [0.0]
    transcript = feed(StreamEvent("reasoning", "Let me "), StreamEvent("reasoning", "think."), clock=clock)
    [bubble] = transcript.snapshot()
    assert bubble["content"] == "Let me think."
    assert bubble["metadata"] == {"title": "💭 Thinking", "status": "pending"}
    clock[0] = 2.25
    transcript.handle_event(ev.text("Answer."))
    thinking, answer = transcript.snapshot()
    assert thinking["metadata"] == {"title": "💭 Thought", "status": "done", "duration": 2.25}
    assert answer == {"role": "assistant", "content": "Answer."}


# -- citations ----------------------------------------------------------------------


def test_citations_become_numbered_footnotes_on_the_last_answer() -> None:
    transcript = feed(
        ev.text("Fact one"),
        StreamEvent("citation", "Example", url="https://example.com/a"),
        ev.text(" and two"),
        StreamEvent("citation", "report.pdf", url="file:report.pdf"),
        ev.text(", again one"),
        StreamEvent("citation", "Example", url="https://example.com/a"),
        ev.text("."),
    )
    assert transcript.text == "Fact one[1] and two[2], again one[1]."
    [answer] = transcript.snapshot()
    assert answer["content"] == (
        "Fact one[1] and two[2], again one[1].\n\n**Sources**\n1. [Example](https://example.com/a)\n2. report.pdf"
    )


def test_footnotes_go_only_under_the_last_answer_bubble() -> None:
    transcript = feed(
        ev.text("Before."),
        StreamEvent("citation", "Doc", url="https://example.com/d"),
        StreamEvent("tool_call", call_id="c", name="t"),
        StreamEvent("tool_output", "x", call_id="c"),
        ev.text("After."),
    )
    first, _tool, last = transcript.snapshot()
    assert first["content"] == "Before.[1]"
    assert last["content"].startswith("After.\n\n**Sources**\n1. [Doc](https://example.com/d)")


# -- notices, errors and how a turn ends ------------------------------------------


def test_notice_and_error_bubbles() -> None:
    transcript = feed(ev.text("Partial"), ev.notice("Recording stopped."), ev.error("Boom (server_error)"))
    answer, notice, error = transcript.value()
    assert answer == {"role": "assistant", "content": "Partial"}
    assert notice["metadata"]["title"] == "ℹ️ Recording stopped."
    assert error["metadata"]["title"] == "❌ Boom (server_error)"
    assert notice["content"] == error["content"] == ""


def test_failed_turn_does_not_repeat_its_error() -> None:
    transcript = feed(ev.text("x"), ev.error("Boom"), ev.turn_end("failed", "Boom"))
    assert titles(transcript) == ["❌ Boom"]
    assert transcript.status == "failed"


def test_failed_turn_with_its_own_message() -> None:
    assert titles(feed(ev.turn_end("failed", "The API key was rejected (401)."))) == ["❌ The API key was rejected (401)."]
    assert titles(feed(ev.turn_end("failed"))) == [STATUS_LINES["failed"]]


def test_unfinished_endings_say_so_and_keep_the_text() -> None:
    cases = {
        (
            "incomplete",
            "The answer was cut short (max_output_tokens).",
        ): "⚠️ Incomplete: The answer was cut short (max_output_tokens).",
        ("incomplete", ""): STATUS_LINES["incomplete"],
        ("interrupted", "The connection was lost."): "⚠️ Interrupted: The connection was lost.",
        ("interrupted", ""): STATUS_LINES["interrupted"],
        ("cancelled", "ignored"): STATUS_LINES["cancelled"],
    }
    for (status, message), line in cases.items():
        transcript = feed(ev.text("Half an ans"), ev.turn_end(status, message))  # type: ignore[arg-type]
        answer, bubble = transcript.value()
        assert answer == {"role": "assistant", "content": "Half an ans"}
        assert bubble["metadata"] == {"title": line, "status": "done"}
        assert "\n" not in line
        assert transcript.status == status


def test_completed_turn_has_no_status_bubble_and_missing_status_is_interrupted() -> None:
    assert feed(ev.text("Done."), ev.turn_end("completed")).value() == "Done."
    transcript = feed(ev.text("Hm"), StreamEvent("turn_end"))
    assert transcript.status == "interrupted"
    assert titles(transcript) == [STATUS_LINES["interrupted"]]


def test_a_lone_status_bubble_is_a_list_not_a_string() -> None:
    value = feed(ev.notice("Type a message first."), ev.turn_end("completed")).value()
    assert value == [{"role": "assistant", "content": "", "metadata": {"title": "ℹ️ Type a message first.", "status": "done"}}]


# -- snapshots are fresh ------------------------------------------------------------


def test_snapshots_are_fresh_dicts() -> None:
    transcript = feed(ev.text("one"), StreamEvent("tool_call", call_id="c", name="t"))
    first = transcript.snapshot()
    second = transcript.snapshot()
    assert first == second
    assert all(a is not b for a, b in zip(first, second, strict=True))
    assert first[1]["metadata"] is not second[1]["metadata"]
    first[0]["content"] = "changed"
    first[1]["metadata"]["title"] = "changed"
    assert transcript.snapshot() == second

    transcript.handle_event(StreamEvent("tool_output", "done", call_id="c"))
    assert second[1]["metadata"]["status"] == "pending"  # an earlier value never changes
    assert transcript.snapshot()[1]["metadata"]["status"] == "done"


def test_value_lists_are_fresh_too() -> None:
    transcript = feed(ev.text("a"), ev.notice("n"))
    one, two = transcript.value(), transcript.value()
    assert one == two and one is not two
    assert isinstance(one, list) and isinstance(two, list)
    assert one[0] is not two[0]
