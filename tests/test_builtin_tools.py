"""Built-in tools the provider runs (code interpreter, file search, web search), their
citations and reasoning summaries: each API's wire format (``synth``) through its
adapter into the transcript, then end to end through the fake server and the bundled
recordings."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ROOT, Fake, replay_settings

from streamchat.backends.assistants import AssistantsAdapter, tool_resources
from streamchat.backends.assistants import tool_specs as assistants_tool_specs
from streamchat.backends.base import Adapter
from streamchat.backends.chat import ChatAdapter
from streamchat.backends.responses import ResponsesAdapter
from streamchat.config import parse_config
from streamchat.events import StreamEvent
from streamchat.replayapi import Script
from streamchat.session import Runtime
from streamchat.sse import RawEvent
from streamchat.testing import synth
from streamchat.transcript import Transcript

FIB = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(fib(20))\n"
PLOT = "https://files.example/cntr_1/plot.png"
REFUND = "Refunds take 14 days. Keep the receipt."
CUT = REFUND.index(" Keep")


def events_of(adapter: Adapter, raws: list[RawEvent]) -> list[StreamEvent]:
    return [e for raw in raws for e in adapter.handle(raw)]


def replay(adapter: Adapter, raws: list[RawEvent], end: str = "completed") -> tuple[Transcript, list[list[dict[str, Any]]]]:
    """Feed the raw events through the adapter into a transcript, keeping each state."""
    transcript = Transcript()
    seen = []
    for raw in raws:
        for event in adapter.handle(raw):
            transcript.handle_event(event)
            seen.append(transcript.snapshot())
    transcript.handle_event(StreamEvent("turn_end", status=adapter.status or "interrupted"))
    seen.append(transcript.snapshot())
    return transcript, seen


def bubble(snapshot: list[dict[str, Any]], title_start: str) -> dict[str, Any]:
    return next(m for m in snapshot if m.get("metadata", {}).get("title", "").startswith(title_start))


def answer(snapshot: list[dict[str, Any]]) -> str:
    return "".join(m["content"] for m in snapshot if "metadata" not in m)


# -- Responses --------------------------------------------------------------------------


def test_responses_code_interpreter_streams_code_then_logs_and_image() -> None:
    ci = synth.CodeInterpreterCall(FIB, logs="6765\n", images=[PLOT], chunks=6)
    raws = synth.responses_stream(["F(20) is 6765."], builtins=[ci])
    kinds = [raw.event for raw in raws]
    for name in (
        "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call_code.delta",
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
    ):
        assert name in kinds
    events = events_of(ResponsesAdapter(), raws)
    call = events[0]
    assert (call.kind, call.name, call.call_id, call.extra) == ("tool_call", "code_interpreter", ci.call_id, {"server": True})
    code = [e.text for e in events if e.kind == "tool_args"]
    assert len(code) == 6 and "".join(code) == FIB
    outputs = [(e.extra["format"], e.text) for e in events if e.kind == "tool_output"]
    assert outputs == [("logs", "6765\n"), ("image", PLOT)]

    transcript, seen = replay(ResponsesAdapter(), raws)
    partial = next(bubble(s, "🐍") for s in seen if any("```python\ndef fib(n):" in m["content"] for m in s))
    assert partial["metadata"]["title"] == "🐍 Running code" and partial["metadata"]["status"] == "pending"
    assert "6765" not in partial["content"]  # the code is shown as it is written, before any output
    done = bubble(transcript.snapshot(), "🐍")
    assert done["metadata"] == {"title": "🐍 Ran code", "status": "done", "id": ci.call_id}
    assert done["content"] == f"```python\n{FIB.rstrip()}\n```\n\n**Result**\n```text\n6765\n```\n\n![output image]({PLOT})"
    assert answer(transcript.snapshot()) == "F(20) is 6765."


def test_responses_file_search_is_shown_while_it_runs_and_cites_files_by_name() -> None:
    fs = synth.FileSearchCall(["refund time"], [("file-1", "handbook.pdf", 0.9)])
    notes = [
        {"type": "file_citation", "file_id": "file-1", "filename": "handbook.pdf", "index": CUT},
        {"type": "file_citation", "file_id": "file-2", "filename": "faq.md", "index": len(REFUND)},
    ]
    raws = synth.responses_stream(synth.split_text(REFUND, 4), builtins=[fs], annotations=notes)
    searching = next(i for i, raw in enumerate(raws) if raw.event == "response.file_search_call.searching")
    transcript, seen = replay(ResponsesAdapter(), raws[: searching + 1])
    running = bubble(seen[-2], "🔎")
    assert running["metadata"]["title"] == "🔎 Searching files" and running["metadata"]["status"] == "pending"

    transcript, _ = replay(ResponsesAdapter(), raws)
    snapshot = transcript.snapshot()
    search = bubble(snapshot, "🔎")
    assert search["metadata"]["title"] == "🔎 Searched files" and search["metadata"]["status"] == "done"
    assert search["content"] == "**Result**\n```text\nSearched: refund time\nFound: handbook.pdf\n```"
    assert answer(snapshot) == "Refunds take 14 days.[1] Keep the receipt.[2]\n\n**Sources**\n1. handbook.pdf\n2. faq.md"


def test_responses_annotations_arrive_after_the_text_they_follow() -> None:
    notes = [{"type": "file_citation", "file_id": "f", "filename": "a.txt", "index": CUT}]
    raws = synth.responses_stream(synth.split_text(REFUND, 4), annotations=notes)
    kinds = [raw.data.get("type") for raw in raws]
    at = kinds.index("response.output_text.annotation.added")
    streamed = "".join(raw.data["delta"] for raw in raws[:at] if raw.data.get("type") == "response.output_text.delta")
    assert len(streamed) >= CUT and len(streamed) - CUT < 4  # right after the delta that reaches it
    assert kinds.count("response.output_text.delta") > kinds[:at].count("response.output_text.delta")


def test_responses_web_search_gives_a_linked_footnote() -> None:
    url = "https://example.org/tower"
    ws = synth.WebSearchCall("tallest tower", sources=[url])
    text = "The tallest tower is 828 m tall."
    note = {"type": "url_citation", "url": url, "title": "Tower facts", "start_index": 0, "end_index": len(text)}
    transcript, seen = replay(
        ResponsesAdapter(), synth.responses_stream(synth.split_text(text, 5), builtins=[ws], annotations=[note])
    )
    assert any(bubble(s, "🌐")["metadata"]["title"] == "🌐 Searching the web" for s in seen if len(s) == 1)
    snapshot = transcript.snapshot()
    assert bubble(snapshot, "🌐")["content"] == f"**Result**\n```text\nSearched: tallest tower\nFound: {url}\n```"
    assert answer(snapshot) == f"{text}[1]\n\n**Sources**\n1. [Tower facts]({url})"


@pytest.mark.parametrize(
    ("note", "cited"),
    [
        (
            {
                "type": "container_file_citation",
                "container_id": "c",
                "file_id": "cfile_1",
                "filename": "chart.png",
                "start_index": 4,
                "end_index": 12,
            },
            "See the file[1].\n\n**Sources**\n1. chart.png",  # at its end_index
        ),
        # A file_path's `index` counts files, not characters: cited at the end.
        ({"type": "file_path", "file_id": "file-77", "index": 0}, "See the file.[1]\n\n**Sources**\n1. file-77"),
    ],
)
def test_responses_other_file_annotations_become_footnotes(note: dict[str, Any], cited: str) -> None:
    transcript, _ = replay(ResponsesAdapter(), synth.responses_stream(["See the file."], annotations=[note]))
    assert answer(transcript.snapshot()) == cited


def test_responses_reasoning_summary_is_a_separate_collapsible_bubble() -> None:
    parts = [["Checking ", "factors."], ["13 × 17 ", "= 221."]]
    raws = synth.responses_stream(["No: 13 × 17."], summary_parts=parts)
    transcript, seen = replay(ResponsesAdapter(), raws)
    thinking = next(s for s in seen if s and s[0]["metadata"]["title"] == "💭 Thinking")
    assert thinking[0]["metadata"]["status"] == "pending"
    first, second = transcript.snapshot()
    assert first == {
        "role": "assistant",
        "content": "Checking factors.\n\n13 × 17 = 221.",
        "metadata": {"title": "💭 Thought", "status": "done"},
    }
    assert second == {"role": "assistant", "content": "No: 13 × 17."}


# -- Assistants -------------------------------------------------------------------------------


def test_assistants_code_interpreter_step_streams_input_then_logs() -> None:
    ci = synth.CodeInterpreterCall(FIB, logs="6765\n", images=["file-img1"], call_id="call_ci1", chunks=5)
    raws = synth.assistants_stream(["F(20) is 6765."], builtins=[ci])
    deltas = [raw.data for raw in raws if raw.event == "thread.run.step.delta"]
    assert deltas[0]["delta"]["step_details"]["tool_calls"][0]["id"] == "call_ci1"
    assert all("id" not in d["delta"]["step_details"]["tool_calls"][0] for d in deltas[1:])  # later deltas: by index
    events = events_of(AssistantsAdapter(), raws)
    assert "".join(e.text for e in events if e.kind == "tool_args" and e.call_id == "call_ci1") == FIB
    transcript, seen = replay(AssistantsAdapter(), raws)
    partial = next(bubble(s, "🐍") for s in seen if any("```python\ndef fib" in m["content"] for m in s))
    assert partial["metadata"]["status"] == "pending"
    done = bubble(transcript.snapshot(), "🐍")
    assert done["metadata"] == {"title": "🐍 Ran code", "status": "done", "id": "call_ci1"}
    assert done["content"] == f"```python\n{FIB.rstrip()}\n```\n\n**Result**\n```text\n6765\n```\n\n🖼️ Image output `file-img1`"
    # The adapter names the file for the driver to download, once.
    assert [e.extra["file_id"] for e in events if e.kind == "file"] == ["file-img1"]
    assert answer(transcript.snapshot()) == "F(20) is 6765."


def test_assistants_outputs_sent_only_with_the_completed_step_are_shown_once() -> None:
    ci = synth.CodeInterpreterCall("print(2)", logs="2\n", call_id="call_ci2")
    raws = [
        raw
        for raw in synth.assistants_stream(["ok"], builtins=[ci])
        if not (raw.event == "thread.run.step.delta" and "outputs" in str(raw.data) and "logs" in str(raw.data))
    ]
    transcript, _ = replay(AssistantsAdapter(), raws)
    assert bubble(transcript.snapshot(), "🐍")["content"].count("```text\n2\n```") == 1
    with_deltas, _ = replay(AssistantsAdapter(), synth.assistants_stream(["ok"], builtins=[ci]))
    assert bubble(with_deltas.snapshot(), "🐍")["content"].count("```text\n2\n```") == 1


MARKED = "Refunds take 14 days【4:0†source】. Keep the receipt【4:1†source】."
MARKS = [
    {"type": "file_citation", "text": "【4:0†source】", "file_citation": {"file_id": "file-1"}},
    {"type": "file_citation", "text": "【4:1†source】", "file_citation": {"file_id": "file-2"}},
]
SEARCH = synth.FileSearchCall(results=[("file-1", "handbook.pdf", 0.9), ("file-2", "faq.md", 0.7)], call_id="call_fs1")
CITED = "Refunds take 14 days[1]. Keep the receipt[2].\n\n**Sources**\n1. handbook.pdf\n2. faq.md"


@pytest.mark.parametrize("size", [1, 3, 5, 200])
def test_assistants_markers_become_numbered_footnotes_with_file_names(size: int) -> None:
    raws = synth.assistants_stream(synth.split_text(MARKED, size), builtins=[SEARCH], annotations=MARKS)
    transcript, seen = replay(AssistantsAdapter(), raws)
    snapshot = transcript.snapshot()
    assert answer(snapshot) == CITED
    assert bubble(snapshot, "🔎")["content"] == "**Result**\n```text\nFound: handbook.pdf, faq.md\n```"
    for state in seen:  # never a raw marker or half of one, at any moment
        assert "【" not in answer(state) and "†" not in answer(state)


def test_assistants_marker_whose_annotation_comes_one_delta_later() -> None:
    raws = synth.assistants_stream(["Refunds take 14 days【4:0†source】", ". Done."])
    later = next(r for r in raws if r.event == "thread.message.delta" and ". Done." in str(r.data))
    later.data["delta"]["content"][0]["text"]["annotations"] = [{**MARKS[0], "index": 0}]
    transcript, _ = replay(AssistantsAdapter(), raws)
    assert answer(transcript.snapshot()) == "Refunds take 14 days[1]. Done.\n\n**Sources**\n1. file-1"


def test_assistants_unannotated_marker_is_dropped_and_brackets_in_text_are_kept() -> None:
    raws = synth.assistants_stream(["【重要】返金は", "14日以内【9:9†", "source】です。"])
    transcript, _ = replay(AssistantsAdapter(), raws)
    assert answer(transcript.snapshot()) == "【重要】返金は14日以内です。"


def test_assistants_text_held_for_a_marker_is_not_lost_when_the_message_ends() -> None:
    raws = synth.assistants_stream(["Price: 5 【note"])
    transcript, seen = replay(AssistantsAdapter(), raws)
    assert answer(transcript.snapshot()) == "Price: 5 【note"
    assert any(answer(s) == "Price: 5 " for s in seen)  # held while it could still become a marker


def test_assistants_file_path_annotation_is_cited_after_its_text() -> None:
    text = "[chart](sandbox:/mnt/data/chart.png)"
    note = {"type": "file_path", "text": "sandbox:/mnt/data/chart.png", "file_path": {"file_id": "file-chart"}}
    transcript, _ = replay(AssistantsAdapter(), synth.assistants_stream([text], annotations=[note]))
    assert answer(transcript.snapshot()) == f"{text}[1]\n\n**Sources**\n1. chart.png"  # named by its path


def test_assistants_file_names_carry_over_to_the_next_stream_of_the_run() -> None:
    names: dict[str, str] = {}
    events_of(AssistantsAdapter(names), synth.assistants_stream(builtins=[SEARCH], calls=[synth.FunctionCall("f", "{}")]))
    assert names == {"file-1": "handbook.pdf", "file-2": "faq.md"}
    later = synth.assistants_stream(synth.split_text(MARKED, 4), annotations=MARKS, continuing=True)
    transcript, _ = replay(AssistantsAdapter(names), later)
    assert answer(transcript.snapshot()) == CITED


# -- Chat Completions --------------------------------------------------------------------------


def test_chat_reasoning_content_is_a_thinking_bubble() -> None:
    raws = synth.chat_stream(["Yes."], reasoning=["Let me ", "check."])
    transcript, _ = replay(ChatAdapter(), raws)
    assert transcript.snapshot() == [
        {"role": "assistant", "content": "Let me check.", "metadata": {"title": "💭 Thought", "status": "done"}},
        {"role": "assistant", "content": "Yes."},
    ]


def test_chat_url_citations_become_linked_footnotes_where_they_end() -> None:
    text = "Burj Khalifa is 828 m tall. It opened in 2010."
    url = "https://example.org/burj"
    cite = {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 27, "title": "Burj", "url": url}}
    transcript, _ = replay(ChatAdapter(), synth.chat_stream(synth.split_text(text, 4), annotations=[cite]))
    assert answer(transcript.snapshot()) == f"Burj Khalifa is 828 m tall.[1] It opened in 2010.\n\n**Sources**\n1. [Burj]({url})"


# -- end to end through the fake server ---------------------------------------------------------

BUILTIN_CONFIG = """
name: Built-ins
instructions: Use the tools.
model: test-model
tools:
  - type: code_interpreter
  - type: file_search
    vector_store_ids: [vs_1]
"""


async def turn(live_runtime: Any, api: str, message: str = "go") -> tuple[Transcript, list[Any]]:
    # Chat Completions has no built-in tools: the app refuses them there (test_config).
    config = BUILTIN_CONFIG.split("tools:")[0] if api == "chat" else BUILTIN_CONFIG
    session = live_runtime(api, config=config).new_session()
    transcript = Transcript()
    seen = []
    async for _ in session.turn_events(message, [], transcript):
        seen.append(transcript.snapshot())
    return transcript, seen


async def test_responses_end_to_end(fake: Fake, live_runtime: Any) -> None:
    ci = synth.CodeInterpreterCall(FIB, logs="6765\n", images=[PLOT])
    fs = synth.FileSearchCall(["refund time"])
    notes = [{"type": "file_citation", "file_id": "file-1", "filename": "handbook.pdf", "index": CUT}]
    raws = synth.responses_stream(
        synth.split_text(REFUND, 4), summary_parts=[["Thinking it over."]], builtins=[ci, fs], annotations=notes
    )
    fake.push(Script(events=synth.timed(raws, step=0)))
    transcript, seen = await turn(live_runtime, "responses")
    (request,) = fake.core.requests("POST", "/responses")
    assert request.body["include"] == ["code_interpreter_call.outputs", "file_search_call.results"]
    assert [t["type"] for t in request.body["tools"]] == ["code_interpreter", "file_search"]
    assert request.body["tools"][1]["vector_store_ids"] == ["vs_1"]
    titles = [m["metadata"]["title"] for m in transcript.snapshot() if "metadata" in m]
    assert titles == ["💭 Thought", "🐍 Ran code", "🔎 Searched files"]
    assert f"![output image]({PLOT})" in bubble(transcript.snapshot(), "🐍")["content"]
    assert answer(transcript.snapshot()) == "Refunds take 14 days.[1] Keep the receipt.\n\n**Sources**\n1. handbook.pdf"
    assert transcript.status == "completed"
    assert any(bubble(s, "🐍")["metadata"]["status"] == "pending" for s in seen if len(s) == 2)


async def test_assistants_end_to_end(fake: Fake, live_runtime: Any) -> None:
    ci = synth.CodeInterpreterCall("print(6765)", logs="6765\n", call_id="call_ci9")
    raws = synth.assistants_stream(synth.split_text(MARKED, 3), builtins=[ci, SEARCH], annotations=MARKS)
    fake.push(Script(events=synth.timed(raws, step=0)))
    transcript, _ = await turn(live_runtime, "assistants")
    (created,) = fake.core.requests("POST", "/assistants")
    assert [t["type"] for t in created.body["tools"]] == ["code_interpreter", "file_search"]
    # The vector stores go where this API reads them: the assistant's tool_resources.
    assert created.body["tool_resources"] == {"file_search": {"vector_store_ids": ["vs_1"]}}
    snapshot = transcript.snapshot()
    assert [m["metadata"]["title"] for m in snapshot if "metadata" in m] == ["🐍 Ran code", "🔎 Searched files"]
    assert answer(snapshot) == CITED
    assert transcript.status == "completed"


async def test_chat_end_to_end_reasoning(fake: Fake, live_runtime: Any) -> None:
    fake.push(Script(events=synth.timed(synth.chat_stream(["4"], reasoning=["2 + 2 ", "is 4."]), step=0)))
    transcript, seen = await turn(live_runtime, "chat")
    assert transcript.snapshot()[0]["content"] == "2 + 2 is 4."
    assert any(s and s[0]["metadata"] == {"title": "💭 Thinking", "status": "pending"} for s in seen)
    assert answer(transcript.snapshot()) == "4"


# -- the bundled recordings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "titles", "text"),
    [
        ("12-code-interpreter", ["🐍 Ran code"], "The 20th Fibonacci number is **6765**"),
        (
            "13-file-search",
            ["🔎 Searched files"],
            "arriving.[1] Returns are accepted for 30 days with a receipt.[2]\n\n**Sources**\n1. handbook.pdf\n2. faq.md",
        ),
        (
            "14-file-search-assistants",
            ["🔎 Searched files"],
            "arriving.[1] Returns are accepted for 30 days with a receipt.[2]\n\n**Sources**\n1. handbook.pdf\n2. faq.md",
        ),
        ("15-reasoning-summary", ["💭 Thought"], "No. **221 = 13 × 17**, so it is not prime."),
        (
            "16-web-search",
            ["🌐 Searched the web"],
            "828 m.[1]\n\n**Sources**\n1. [Burj Khalifa - Wikipedia](https://en.wikipedia.org/wiki/Burj_Khalifa)",
        ),
    ],
)
async def test_bundled_builtin_recordings_replay(name: str, titles: list[str], text: str) -> None:
    runtime = Runtime(replay_settings(ROOT / "recordings"))
    assert runtime.library is not None
    prompt = runtime.library.load(name).prompts[0]
    session = runtime.new_session(name)
    transcript = Transcript()
    async for _ in session.turn_events(prompt, [], transcript):
        pass
    snapshot = transcript.snapshot()
    assert [m["metadata"]["title"] for m in snapshot if "metadata" in m] == titles
    assert text in answer(snapshot)
    assert "【" not in answer(snapshot)
    assert transcript.status == "completed"


def test_code_with_a_fence_in_it_cannot_break_out_of_its_block() -> None:
    code = 'print("```")\n'
    ci = synth.CodeInterpreterCall(code, logs="````\n")
    transcript, _ = replay(ResponsesAdapter(), synth.responses_stream(["ok"], builtins=[ci]))
    assert bubble(transcript.snapshot(), "🐍")["content"] == (
        '````python\nprint("```")\n````\n\n**Result**\n`````text\n````\n`````'
    )


def test_assistants_built_in_tool_options_go_where_the_api_reads_them() -> None:
    config = parse_config(
        "name: t\ninstructions: i\nmodel: m\nbackend: assistants\ntools:\n"
        "  - type: file_search\n    vector_store_ids: [vs_1, vs_2]\n    max_num_results: 5\n"
        "  - type: code_interpreter\n    file_ids: [file-1]\n"
    )
    assert assistants_tool_specs(config) == [
        {"type": "file_search", "file_search": {"max_num_results": 5}},
        {"type": "code_interpreter"},
    ]
    assert tool_resources(config) == {
        "file_search": {"vector_store_ids": ["vs_1", "vs_2"]},
        "code_interpreter": {"file_ids": ["file-1"]},
    }
