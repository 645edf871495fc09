"""The function-call loop of each backend, end to end over real HTTP: what the model
asks for runs locally, the exact outputs go back to the server, the bubbles show it
all, and a recorded tool turn replays identically without running a handler."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Fake, make_settings, replay_settings, text_script

from streamchat.backends import BACKENDS
from streamchat.backends.base import MAX_TOOL_ROUNDS, Conversation, ToolCall, TurnContext
from streamchat.config import parse_config
from streamchat.demo_tools import get_time
from streamchat.replayapi import Script
from streamchat.session import ChatSession, Runtime, make_client
from streamchat.testing import synth
from streamchat.tools import LocalTools
from streamchat.transcript import Transcript

APIS = ["responses", "assistants", "chat"]
NOW = "2026-11-25T03:04:00+00:00"
TOKYO = '{"timezone": "Asia/Tokyo", "time": "12:04", "date": "2026-11-25", "utc_offset": "+0900"}'
PARIS = '{"timezone": "Europe/Paris", "time": "04:04", "date": "2026-11-25", "utc_offset": "+0100"}'

CALLS: list[str] = []
"""The time zones ``fixed_time`` was asked for, in order (tests clear it)."""
GATE = threading.Event()


def fixed_time(timezone: str) -> dict[str, str]:
    CALLS.append(timezone)
    return get_time(timezone, now=NOW)


def explode() -> str:
    raise RuntimeError("the tool broke")


def stuck() -> str:
    GATE.wait(2)  # released by the test; the bound only guards against a test bug
    return "too late"


TOOL_CONFIG = """
name: Tool tester
instructions: Use the tools.
model: test-model
backend: responses
tools:
  - name: fixed_time
    description: The time in a time zone.
    handler: test_tool_loop:fixed_time
    parameters:
      type: object
      properties:
        timezone: {type: string}
      required: [timezone]
      additionalProperties: false
  - name: explode
    handler: test_tool_loop:explode
  - name: stuck
    handler: test_tool_loop:stuck
    timeout: 0.05
"""


@pytest.fixture(autouse=True)
def _fresh_handlers() -> Any:
    CALLS.clear()
    GATE.clear()
    yield
    GATE.set()


def call(name: str, arguments: str) -> synth.FunctionCall:
    return synth.FunctionCall(name, arguments)


def tokyo_call() -> synth.FunctionCall:
    return call("fixed_time", '{"timezone": "Asia/Tokyo"}')


def ask(api: str, *calls: synth.FunctionCall) -> Script:
    """A stream in which the model asks for ``calls`` and stops for their outputs."""
    if api == "responses":
        raws = synth.responses_stream(calls=calls)
    elif api == "assistants":
        raws = synth.assistants_stream(calls=calls, end="requires_action", run_id="run_loop")
    else:
        raws = synth.chat_stream(calls=calls, finish_reason="tool_calls")
    return Script(events=synth.timed(raws, step=0))


def answer(api: str, text: str) -> Script:
    """The stream that answers once the outputs are in (on Assistants, the same run goes on)."""
    kw: dict[str, Any] = {"continuing": True, "run_id": "run_loop"} if api == "assistants" else {}
    return text_script(api, text, **kw)


def sent_outputs(fake: Fake, api: str) -> list[list[tuple[str, str]]]:
    """The tool outputs the server received, round by round, as ``(call_id, output)``."""
    rounds: list[list[tuple[str, str]]] = []
    if api == "responses":
        for request in fake.core.requests("POST", "/responses"):
            items = [i for i in request.body["input"] if isinstance(i, dict) and i.get("type") == "function_call_output"]
            if items:
                rounds.append([(i["call_id"], i["output"]) for i in items])
    elif api == "assistants":
        for request in fake.core.requests("POST", "/submit_tool_outputs"):
            assert request.body["stream"] is True
            rounds.append([(o["tool_call_id"], o["output"]) for o in request.body["tool_outputs"]])
    else:
        last = fake.core.requests("POST", "/chat/completions")[-1].body["messages"]
        for message in last:
            if message["role"] == "assistant" and message.get("tool_calls"):
                rounds.append([])
            elif message["role"] == "tool":
                rounds[-1].append((message["tool_call_id"], message["content"]))
    return rounds


async def states(session: ChatSession, message: str) -> tuple[Transcript, list[list[dict[str, Any]]]]:
    """Every UI state of one turn (coalescing is off in tests: one per event)."""
    transcript = Transcript()
    seen = []
    async for _ in session.turn_events(message, [], transcript):
        seen.append(transcript.snapshot())
    return transcript, seen


def tools_of(snapshot: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in snapshot if m.get("metadata", {}).get("title", "").startswith("🛠️")]


def answer_of(snapshot: list[dict[str, Any]]) -> str:
    return "".join(m["content"] for m in snapshot if "metadata" not in m)


def assert_bubble_lifecycle(seen: list[list[dict[str, Any]]], name: str, arguments: str, output: str) -> None:
    """The tool bubble appears pending, fills in with the arguments, closes with the
    output, and only then does the answer start."""

    def first(predicate: Any) -> int:
        return next(i for i, snap in enumerate(seen) if predicate(snap))

    appeared = first(lambda s: tools_of(s))
    bubble = tools_of(seen[appeared])[0]
    assert bubble["metadata"]["title"] == f"🛠️ Using tool {name}"
    assert bubble["metadata"]["status"] == "pending"
    filled = first(lambda s: tools_of(s) and arguments in tools_of(s)[0]["content"])
    assert tools_of(seen[filled])[0]["metadata"]["status"] == "pending"
    closed = first(lambda s: tools_of(s) and tools_of(s)[0]["metadata"]["status"] == "done")
    done = tools_of(seen[closed])[0]
    assert done["metadata"]["title"] == f"🛠️ Used tool {name}"
    assert done["content"] == f"```json\n{arguments}\n```\n\n**Result**\n```text\n{output}\n```"
    answered = first(lambda s: answer_of(s))
    assert appeared < filled < closed < answered


# -- one call, parallel calls, two rounds -----------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_one_call_runs_and_the_answer_follows(api: str, fake: Fake, live_runtime: Any) -> None:
    tokyo = tokyo_call()
    fake.push(ask(api, tokyo), answer(api, "It is 12:04 in Tokyo."))
    session = live_runtime(api, config=TOOL_CONFIG).new_session()
    transcript, seen = await states(session, "What time is it in Tokyo?")
    assert CALLS == ["Asia/Tokyo"]
    assert sent_outputs(fake, api) == [[(tokyo.call_id, TOKYO)]]
    assert_bubble_lifecycle(seen, "fixed_time", '{"timezone": "Asia/Tokyo"}', TOKYO)
    assert transcript.status == "completed"
    final = transcript.snapshot()
    assert len(final) == 2 and final[1] == {"role": "assistant", "content": "It is 12:04 in Tokyo."}
    assert final[0]["metadata"]["id"] == tokyo.call_id
    assert [r.stream for r in fake.requests_seen] == [0, 1]


@pytest.mark.parametrize("api", APIS)
async def test_two_parallel_calls_each_get_their_own_output(api: str, fake: Fake, live_runtime: Any) -> None:
    tokyo, paris = tokyo_call(), call("fixed_time", '{"timezone": "Europe/Paris"}')
    fake.push(ask(api, tokyo, paris), answer(api, "Tokyo 12:04, Paris 04:04."))
    session = live_runtime(api, config=TOOL_CONFIG).new_session()
    transcript, seen = await states(session, "Tokyo and Paris?")
    assert sent_outputs(fake, api) == [[(tokyo.call_id, TOKYO), (paris.call_id, PARIS)]]
    assert CALLS == ["Asia/Tokyo", "Europe/Paris"]
    bubbles = tools_of(transcript.snapshot())
    assert [b["metadata"]["id"] for b in bubbles] == [tokyo.call_id, paris.call_id]
    assert [b["metadata"]["status"] for b in bubbles] == ["done", "done"]
    assert "Asia/Tokyo" in bubbles[0]["content"] and "Europe/Paris" not in bubbles[0]["content"]
    assert bubbles[1]["content"].endswith(f"```text\n{PARIS}\n```")
    # Both bubbles were open at once while the model was still asking.
    assert any(len(tools_of(s)) == 2 and all(b["metadata"]["status"] == "pending" for b in tools_of(s)) for s in seen)
    assert answer_of(transcript.snapshot()) == "Tokyo 12:04, Paris 04:04."
    if api == "chat":  # the assistant message sent back lists both calls, by the ids the model gave
        messages = fake.core.requests("POST", "/chat/completions")[-1].body["messages"]
        asked = next(m for m in messages if m["role"] == "assistant")
        assert [(c["id"], c["function"]["arguments"]) for c in asked["tool_calls"]] == [
            (tokyo.call_id, tokyo.arguments),
            (paris.call_id, paris.arguments),
        ]


@pytest.mark.parametrize("api", APIS)
async def test_a_two_round_loop(api: str, fake: Fake, live_runtime: Any) -> None:
    tokyo, paris = tokyo_call(), call("fixed_time", '{"timezone": "Europe/Paris"}')
    fake.push(ask(api, tokyo), ask(api, paris), answer(api, "Done."))
    session = live_runtime(api, config=TOOL_CONFIG).new_session()
    transcript, _ = await states(session, "First Tokyo, then Paris.")
    assert sent_outputs(fake, api) == [[(tokyo.call_id, TOKYO)], [(paris.call_id, PARIS)]]
    assert [r.stream for r in fake.requests_seen] == [0, 1, 2]
    assert transcript.status == "completed"
    snapshot = transcript.snapshot()
    # The same tool twice: told apart by number.
    assert [m["metadata"]["title"] for m in snapshot[:2]] == ["🛠️ Used tool fixed_time", "🛠️ Used tool fixed_time #2"]
    assert snapshot[2] == {"role": "assistant", "content": "Done."}


async def test_responses_sends_outputs_on_the_same_conversation(fake: Fake, live_runtime: Any) -> None:
    fake.push(ask("responses", tokyo_call()), answer("responses", "ok"))
    session = live_runtime("responses", config=TOOL_CONFIG).new_session()
    await states(session, "time?")
    first, second = (r.body for r in fake.core.requests("POST", "/responses"))
    assert first["conversation"] == second["conversation"] == session.conv.conversation_id
    assert [t["name"] for t in first["tools"]] == ["fixed_time", "explode", "stuck"]
    assert "include" not in first  # only asked for with the code interpreter


async def test_assistants_submits_to_the_run_that_asked(fake: Fake, live_runtime: Any) -> None:
    fake.push(ask("assistants", tokyo_call()), answer("assistants", "ok"))
    session = live_runtime("assistants", config=TOOL_CONFIG).new_session()
    await states(session, "time?")
    (submit,) = fake.core.requests("POST", "/submit_tool_outputs")
    assert submit.path == f"/threads/{session.conv.thread_id}/runs/run_loop/submit_tool_outputs"


# -- failures: an error text goes back, the bubble shows it, the turn goes on ----------------

FAILURES = {
    "unknown-tool": (
        "no_such_tool",
        "{}",
        "Error: unknown tool 'no_such_tool' (available: fixed_time, explode, stuck).",
    ),
    "not-json": (
        "fixed_time",
        '{"timezone": "Asia/Tokyo"',
        "Error: the arguments are not valid JSON (Expecting ',' delimiter at position 25).",
    ),
    "schema": ("fixed_time", '{"timezone": 9}', "Error: invalid arguments (timezone: 9 is not of type 'string')."),
    "raises": ("explode", "{}", "Error: the tool 'explode' failed (RuntimeError: the tool broke)."),
    "timeout": ("stuck", "{}", "Error: the tool 'stuck' did not finish within 0.05 s."),
}


@pytest.mark.parametrize("case", list(FAILURES))
@pytest.mark.parametrize("api", APIS)
async def test_a_failing_call_sends_an_error_text_and_the_turn_goes_on(
    api: str, case: str, fake: Fake, live_runtime: Any
) -> None:
    name, arguments, expected = FAILURES[case]
    bad = call(name, arguments)
    fake.push(ask(api, bad), answer(api, "Sorry, the tool failed."))
    session = live_runtime(api, config=TOOL_CONFIG).new_session()
    try:
        transcript, seen = await asyncio.wait_for(states(session, "go"), timeout=5)
    finally:
        GATE.set()
    assert sent_outputs(fake, api) == [[(bad.call_id, expected)]]
    assert_bubble_lifecycle(seen, name, arguments, expected)
    assert transcript.status == "completed"
    assert answer_of(transcript.snapshot()) == "Sorry, the tool failed."
    assert CALLS == []


# -- the round bound ---------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_a_model_that_always_asks_is_stopped_at_the_bound(api: str, fake: Fake, live_runtime: Any) -> None:
    fake.responder = lambda req: ask(req.api, tokyo_call())
    session = live_runtime(api, config=TOOL_CONFIG).new_session()
    transcript, _ = await states(session, "loop forever")
    assert len(fake.requests_seen) == MAX_TOOL_ROUNDS + 1
    assert len(CALLS) == MAX_TOOL_ROUNDS  # the last request's call is not run
    assert transcript.status == "incomplete"
    snapshot = transcript.snapshot()
    titles = [m["metadata"]["title"] for m in snapshot]
    assert titles[-2:] == [
        f"ℹ️ Stopped after {MAX_TOOL_ROUNDS} rounds of tool calls.",
        f"⚠️ Incomplete: The tool loop hit its limit of {MAX_TOOL_ROUNDS} rounds.",
    ]
    assert titles[-3] == f"🛠️ Using tool fixed_time #{MAX_TOOL_ROUNDS + 1} (did not finish)"
    assert titles[:MAX_TOOL_ROUNDS] == ["🛠️ Used tool fixed_time"] + [
        f"🛠️ Used tool fixed_time #{n}" for n in range(2, MAX_TOOL_ROUNDS + 1)
    ]
    if api == "assistants":  # the run waiting for outputs is cancelled, not left hanging
        assert len(fake.core.requests("POST", "/cancel")) == 1


@pytest.mark.parametrize("api", APIS)
async def test_the_bound_is_the_turn_contexts(api: str, fake: Fake) -> None:
    fake.responder = lambda req: ask(req.api, tokyo_call())
    settings = make_settings(api, url=fake.url, config=TOOL_CONFIG)
    client = make_client(settings)
    backend = BACKENDS[api](client, settings.config)
    ran: list[ToolCall] = []

    async def run_tool(c: ToolCall) -> str:
        ran.append(c)
        return "ok"

    try:
        events = [e async for e in backend.turn(Conversation(), "loop", [], TurnContext(run_tool=run_tool, max_rounds=2))]
    finally:
        await backend.close()
        await client.close()
    assert len(fake.requests_seen) == 3 and len(ran) == 2
    assert [e.text for e in events if e.kind == "tool_output"] == ["ok", "ok"]
    assert (events[-2].kind, events[-2].text) == ("notice", "Stopped after 2 rounds of tool calls.")
    assert (events[-1].kind, events[-1].status) == ("turn_end", "incomplete")


# -- record, then replay offline ------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_a_recorded_tool_turn_replays_identically_without_the_handler(
    api: str, fake: Fake, live_runtime: Any, tmp_path: Path
) -> None:
    tokyo, paris = tokyo_call(), call("fixed_time", '{"timezone": "Europe/Paris"}')
    fake.push(ask(api, tokyo, paris), answer(api, "Tokyo 12:04, Paris 04:04."))
    live = live_runtime(api, config=TOOL_CONFIG, record_dir=tmp_path)
    session = live.new_session()
    _, live_states = await states(session, "What time is it in Tokyo and Paris?")
    await session.close()
    assert CALLS == ["Asia/Tokyo", "Europe/Paris"]
    (path,) = tmp_path.glob("*.jsonl")

    replay = Runtime(replay_settings(path, config=parse_config(TOOL_CONFIG).with_overrides(backend=api)))
    replayed = replay.new_session()
    _, replay_states = await states(replayed, "What time is it in Tokyo and Paris?")
    assert replay_states == live_states
    assert CALLS == ["Asia/Tokyo", "Europe/Paris"]  # replay served the recorded outputs
    assert replayed.last_status == "completed"
    assert tools_of(replay_states[-1])[1]["content"].endswith(f"```text\n{PARIS}\n```")


@pytest.mark.parametrize(
    ("name", "api"),
    [("08-tool-call-responses", "responses"), ("09-tool-call-assistants", "assistants"), ("10-tool-call-chat", "chat")],
)
async def test_bundled_tool_call_replays_offline(name: str, api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[ToolCall] = []

    async def never(self: LocalTools, c: ToolCall) -> str:
        ran.append(c)
        return "a handler ran"

    monkeypatch.setattr(LocalTools, "run", never)
    runtime = Runtime(replay_settings(ROOT / "recordings", config=parse_config((ROOT / "assistant_config.yaml").read_text())))
    session = runtime.new_session(name)
    assert runtime.library is not None and runtime.library.load(name).api == api
    transcript, seen = await states(session, "what time is it in Tokyo?")
    assert ran == []
    assert_bubble_lifecycle(seen, "get_time", '{"timezone":"Asia/Tokyo"}', TOKYO)
    assert transcript.status == "completed"
    assert answer_of(transcript.snapshot()) == "It is **12:04** in Tokyo right now (Wednesday, 25 November 2026, UTC+9)."


async def test_bundled_parallel_calls_replay_offline() -> None:
    runtime = Runtime(replay_settings(ROOT / "recordings"))
    session = runtime.new_session("11-parallel-tool-calls")
    transcript, _ = await states(session, "What time is it in Tokyo and in Paris?")
    bubbles = tools_of(transcript.snapshot())
    assert [b["content"].split("```text\n")[1].rstrip("`\n") for b in bubbles] == [TOKYO, PARIS]
    assert transcript.status == "completed"


async def test_replay_without_a_recorded_output_says_so(tmp_path: Path) -> None:
    """A recording that lacks a call's output answers the model with an error, never by
    running the handler."""
    source = (ROOT / "recordings" / "10-tool-call-chat.jsonl").read_text().splitlines()
    kept = [line for line in source if '"kind":"tool_output"' not in line]
    path = tmp_path / "no-output.jsonl"
    path.write_text("\n".join(kept) + "\n")
    runtime = Runtime(replace(replay_settings(path), config=parse_config(TOOL_CONFIG)))
    transcript, _ = await states(runtime.new_session(), "What time is it in Tokyo?")
    (bubble,) = tools_of(transcript.snapshot())
    assert "Error: the recording has no output for call" in bubble["content"]
    assert CALLS == []
