"""The three backends against the fake server over real HTTP: streaming, every way a
turn can end badly, HTTP errors, Stop, concurrent sessions and remote clean-up.

Each test talks to the loopback fake server with the real `openai` client, so the
bytes, the framing and the SDK's error handling are the ones a live turn sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from conftest import BASE_CONFIG, BUILDERS, TEST_KEY, Fake, run_turn, text_script

from streamchat.replayapi import Script
from streamchat.session import ChatSession, Runtime
from streamchat.sse import RawEvent
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript

APIS = ["responses", "assistants", "chat"]
WRONG_KEY = "sk-wrong-1111111111111111111111"


def stream(api: str, deltas: list[str], *, step: float = 0.0, **kw: Any) -> list[tuple[float, RawEvent]]:
    return synth.timed(BUILDERS[api](deltas, **kw), step=step)


def delta_text(raw: RawEvent) -> str:
    """The answer text an event carries, in any of the three wire formats."""
    data = raw.data
    if not isinstance(data, dict):
        return ""
    if data.get("type") == "response.output_text.delta":
        return str(data["delta"])
    if data.get("object") == "thread.message.delta":
        return "".join((p.get("text") or {}).get("value", "") for p in data["delta"]["content"])
    if data.get("object") == "chat.completion.chunk":
        return "".join((c.get("delta") or {}).get("content") or "" for c in data["choices"])
    return ""


def status_titles(value: Any) -> list[str]:
    assert isinstance(value, list), f"expected messages with a status bubble, got {value!r}"
    return [m["metadata"]["title"] for m in value if m.get("metadata")]


def assert_not_complete(value: Any, partial: str, session: ChatSession, status: str) -> str:
    """The partial text is kept, a one-line status bubble ends the turn, and the turn
    does not count as complete. Returns the status line."""
    assert session.last_status == status != "completed"
    assert isinstance(value, list)
    assert value[0] == {"role": "assistant", "content": partial}
    last = value[-1]
    title = last["metadata"]["title"]
    assert title.strip() and "\n" not in title
    assert last["content"] == ""
    return str(title)


# -- streaming text ----------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_multibyte_text_streams_and_ends_complete(api: str, fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    # Size 1 splits the emoji ZWJ family and the skin-tone modifier across deltas.
    text = "こんにちは、世界!🎉 家族👨‍👩‍👧 と👍🏽 ok"
    fake.push(text_script(api, text, size=1))
    session = live_runtime(api).new_session()
    values = await run_turn(session, "hi")
    assert values[-1] == text
    lengths = [len(v) for v in values if isinstance(v, str)]
    assert len(set(lengths)) >= 10 and lengths == sorted(lengths)
    assert all(text.startswith(v) for v in values if isinstance(v, str))
    assert session.last_status == "completed"


async def test_chat_usage_and_filter_chunks_without_choices(fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    events = stream("chat", ["Hel", "lo ", "🌍"], filter_chunk=True, usage=True)
    assert events[0][1].data["choices"] == [] and events[-2][1].data["choices"] == []
    assert "usage" in events[-2][1].data
    fake.push(Script(events=events))
    session = live_runtime("chat").new_session()
    values = await run_turn(session, "hi")
    assert values[-1] == "Hello 🌍"
    assert session.last_status == "completed"


async def test_chat_null_content_on_role_and_tool_chunks(fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    call = synth.FunctionCall("lookup", '{"q": "x"}', call_id="call_null")
    first = synth.chat_stream(calls=[call], finish_reason="tool_calls")
    role = first[0].data
    role["choices"][0]["delta"] = {"role": "assistant", "content": None}
    tool_chunks = [e for e in first if isinstance(e.data, dict) and any("tool_calls" in c["delta"] for c in e.data["choices"])]
    assert any(c["delta"].get("content", "missing") is None for e in tool_chunks for c in e.data["choices"])
    fake.push(Script(events=synth.timed(first, step=0)), text_script("chat", "Done."))
    session = live_runtime("chat").new_session()
    values = await run_turn(session, "look it up")
    final = values[-1]
    assert isinstance(final, list)
    assert final[-1] == {"role": "assistant", "content": "Done."}
    assert "None" not in str([m["content"] for m in final])
    assert final[0]["metadata"]["id"] == "call_null"
    assert session.last_status == "completed"


@pytest.mark.parametrize("end", ["completed", "failed", "incomplete", "error"])
async def test_assistants_without_event_lines(end: str, fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    deltas = ["Ohne ", "event", ": 🚀"]
    fake.push(Script(events=stream("assistants", deltas, end=end, event_lines=False)))
    assert all(raw.event is None for _, raw in fake.queue[0].events)
    session = live_runtime("assistants").new_session()
    values = await run_turn(session, "hi")
    if end == "completed":
        assert values[-1] == "".join(deltas)
        assert session.last_status == "completed"
        return
    status = "incomplete" if end == "incomplete" else "failed"
    title = assert_not_complete(values[-1], "".join(deltas), session, status)
    expected = {
        "failed": "The run failed on the server.",
        "incomplete": "max_completion_tokens",
        "error": "Something went wrong mid-stream.",
    }[end]
    assert expected in title


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
async def test_responses_error_event_flat_and_nested(nested: bool, fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    events = stream("responses", ["Part", "ial"], end="error", nested_error=nested)
    last = events[-1][1].data
    assert ("error" in last) is nested
    fake.push(Script(events=events))
    session = live_runtime("responses").new_session()
    values = await run_turn(session, "hi")
    title = assert_not_complete(values[-1], "Partial", session, "failed")
    assert "Rate limit reached during the stream." in title
    assert "rate_limit_exceeded" in title


# -- turns that end badly ------------------------------------------------------------

CHAT_ERROR = {"message": "The model crashed mid-answer.", "type": "server_error", "code": "server_error"}

# (api, outcome) → builder keywords, expected status and a phrase the status line holds.
BAD_ENDS: dict[tuple[str, str], tuple[dict[str, Any], str, str]] = {
    ("responses", "error"): ({"end": "error"}, "failed", "Rate limit reached during the stream."),
    ("responses", "failed"): ({"end": "failed"}, "failed", "The model failed to finish."),
    ("responses", "incomplete"): ({"end": "incomplete"}, "incomplete", "max_output_tokens"),
    ("responses", "cut off"): ({"end": None}, "interrupted", "Interrupted"),
    ("assistants", "error"): ({"end": "error"}, "failed", "Something went wrong mid-stream."),
    ("assistants", "failed"): ({"end": "failed"}, "failed", "The run failed on the server."),
    ("assistants", "incomplete"): ({"end": "incomplete"}, "incomplete", "max_completion_tokens"),
    ("assistants", "cut off"): ({"end": None}, "interrupted", "Interrupted"),
    # Chat has no failed run: a server reports failure with an error chunk.
    ("chat", "error"): ({"error": CHAT_ERROR}, "failed", "The model crashed mid-answer."),
    ("chat", "incomplete"): ({"finish_reason": "length"}, "incomplete", "length"),
    ("chat", "cut off"): ({"finish_reason": None, "done": False}, "interrupted", "Interrupted"),
    # [DONE] without a finish_reason: the answer did not finish either.
    ("chat", "done without finish"): ({"finish_reason": None, "done": True}, "interrupted", "Interrupted"),
}


@pytest.mark.parametrize(("api", "outcome"), list(BAD_ENDS), ids=[f"{a}-{o}" for a, o in BAD_ENDS])
async def test_bad_end_keeps_partial_text_and_says_so(
    api: str, outcome: str, fake: Fake, live_runtime: Callable[..., Runtime]
) -> None:
    kw, status, phrase = BAD_ENDS[(api, outcome)]
    deltas = ["途中", "までの", "答え 🙂"]
    fake.push(Script(events=stream(api, deltas, **kw)))
    session = live_runtime(api).new_session()
    values = await run_turn(session, "hi")
    title = assert_not_complete(values[-1], "".join(deltas), session, status)
    assert phrase in title
    # The next message in the same session works.
    assert (await run_turn(session, "again"))[-1] == "Echo: again"
    assert session.last_status == "completed"


@pytest.mark.parametrize("api", APIS)
async def test_dropped_connection_mid_stream(api: str, fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    events = stream(api, ["one ", "two ", "three ", "four ", "five"])
    delta_at = [i for i, (_, raw) in enumerate(events) if delta_text(raw)]
    drop_after = delta_at[2] + 1  # three deltas go out, then the connection is reset
    fake.push(FaultScript(events=events, drop_after=drop_after))
    session = live_runtime(api).new_session()
    values = await run_turn(session, "hi")
    title = assert_not_complete(values[-1], "one two three ", session, "interrupted")
    assert "connection was lost" in title
    assert (await run_turn(session, "again"))[-1] == "Echo: again"


@pytest.mark.parametrize("api", APIS)
async def test_silent_server_times_out(api: str, fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    events = stream(api, ["still ", "there?"])
    stall_after = [i for i, (_, raw) in enumerate(events) if delta_text(raw)][-1] + 1
    fake.push(FaultScript(events=events, stall_after=stall_after, stall=1.0))
    session = live_runtime(api, read_timeout=0.3).new_session()
    values = await run_turn(session, "hi")
    title = assert_not_complete(values[-1], "still there?", session, "interrupted")
    assert "timed out" in title


# -- HTTP errors -----------------------------------------------------------------------

HTTP_ERRORS: dict[str, tuple[Script | None, str, list[str]]] = {
    "401": (None, "failed", ["401", "OPENAI_API_KEY"]),
    "404": (
        Script(
            status=404,
            error={"message": "The model `nope` does not exist.", "type": "invalid_request_error", "code": "model_not_found"},
        ),
        "failed",
        ["404", "The model `nope` does not exist."],
    ),
    "429": (
        Script(
            status=429,
            error={"message": "Rate limit reached for requests.", "type": "requests", "code": "rate_limit_exceeded"},
            headers={"retry-after": "7"},
        ),
        "failed",
        ["429", "Try again in 7 s", "Rate limit reached for requests."],
    ),
    "500": (Script(status=500), "failed", ["500", "Try again"]),
}


@pytest.mark.parametrize("code", list(HTTP_ERRORS))
@pytest.mark.parametrize("api", APIS)
async def test_http_error_is_one_line_and_next_message_works(
    api: str, code: str, fake: Fake, live_runtime: Callable[..., Runtime]
) -> None:
    script, status, phrases = HTTP_ERRORS[code]
    if script is None:
        runtime = live_runtime(api, api_key=WRONG_KEY)
    else:
        runtime = live_runtime(api)
        fake.push(script)
    session = runtime.new_session()
    values = await run_turn(session, "hi")  # raises nothing
    final = values[-1]
    titles = status_titles(final)
    assert len(titles) == 1 and "\n" not in titles[0]
    assert all(p in titles[0] for p in phrases), titles[0]
    assert WRONG_KEY not in str(final) and TEST_KEY not in str(final)
    assert session.last_status == status
    if script is None:
        fake.core.api_key = WRONG_KEY  # the key is fixed on the server's side
    assert (await run_turn(session, "again"))[-1] == "Echo: again"
    assert session.last_status == "completed"


# -- Stop ------------------------------------------------------------------------------


async def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll a condition on short awaits (the server runs in another thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.parametrize("api", APIS)
async def test_stop_mid_stream_closes_the_stream_and_cancels_the_run(
    api: str, fake: Fake, live_runtime: Callable[..., Runtime]
) -> None:
    kw: dict[str, Any] = {"run_id": "run_stopme"} if api == "assistants" else {}
    deltas = synth.split_text("A long answer that takes a while to stream. " * 4, 4)
    fake.push(Script(events=stream(api, deltas, step=0.05, **kw)))
    fake.core.speed = 1.0  # ~2 s of stream: it is still open when Stop comes
    runtime = live_runtime(api)
    session = runtime.new_session()
    gen = session.turn("hi", [])
    seen: list[str] = []
    async for value in gen:
        if isinstance(value, str) and value:
            seen.append(value)
        if len(seen) == 3:
            break
    await gen.aclose()
    assert session.last_status == "cancelled"
    assert await wait_for(lambda: len(fake.core.disconnects()) == 1)
    await runtime.shutdown()  # waits for the background cancel
    cancels = fake.core.requests("POST", "/cancel")
    if api == "assistants":
        thread_id = session.conv.thread_id
        assert [r.path for r in cancels] == [f"/threads/{thread_id}/runs/run_stopme/cancel"]
    else:
        assert cancels == []
    # The session goes on.
    fake.core.speed = 0.0
    assert (await run_turn(session, "again"))[-1] == "Echo: again"


@pytest.mark.parametrize("api", APIS)
async def test_stopped_answer_keeps_partial_text_marked_stopped(
    api: str, fake: Fake, live_runtime: Callable[..., Runtime]
) -> None:
    from streamchat.transcript import Transcript

    events = stream(api, ["kept ", "text ", "and ", "more"])
    stall_after = [i for i, (_, raw) in enumerate(events) if delta_text(raw)][1] + 1  # silent after two deltas
    fake.push(FaultScript(events=events, stall_after=stall_after, stall=1.0))
    session = live_runtime(api).new_session()
    transcript = Transcript()
    gen = session.turn_events("hi", [], transcript)
    async for _ in gen:
        if transcript.text:
            break
    await gen.aclose()
    messages = transcript.snapshot()
    assert transcript.status == "cancelled"
    assert messages[0]["content"] == transcript.text == "kept "
    assert messages[-1]["metadata"]["title"].startswith("⏹ Stopped")


# -- sessions --------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_two_concurrent_sessions_keep_separate_state(api: str, fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    fake.core.speed = 1.0
    fake.responder = lambda req: Script(events=stream(req.api, synth.split_text(f"Echo: {req.user}", 2), step=0.005))
    runtime = live_runtime(api)
    a, b = runtime.new_session(), runtime.new_session()

    async def chat(session: ChatSession, name: str) -> list[Any]:
        history: list[dict[str, Any]] = []
        finals = []
        for n in range(2):
            message = f"{name} {n}"
            final = (await run_turn(session, message, history))[-1]
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": final}]
            finals.append(final)
        return finals

    got_a, got_b = await asyncio.gather(chat(a, "alpha"), chat(b, "beta"))
    assert got_a == ["Echo: alpha 0", "Echo: alpha 1"]
    assert got_b == ["Echo: beta 0", "Echo: beta 1"]
    # Each conversation's second turn is its own second turn, not the fourth of a shared one.
    positions = {req.user: req.position for req in fake.requests_seen}
    assert positions == {"alpha 0": 0, "alpha 1": 1, "beta 0": 0, "beta 1": 1}
    if api == "responses":
        assert a.conv.conversation_id and b.conv.conversation_id
        assert a.conv.conversation_id != b.conv.conversation_id
        by_user = {r.body["input"][0]["content"]: r.body["conversation"] for r in fake.core.requests("POST", "/responses")}
        assert by_user["alpha 0"] == by_user["alpha 1"] == a.conv.conversation_id
        assert by_user["beta 0"] == by_user["beta 1"] == b.conv.conversation_id
    elif api == "assistants":
        assert a.conv.thread_id and b.conv.thread_id and a.conv.thread_id != b.conv.thread_id
        by_user = {r.body["content"]: r.path for r in fake.core.requests("POST", "/messages")}
        assert by_user["alpha 0"] == by_user["alpha 1"] == f"/threads/{a.conv.thread_id}/messages"
        assert by_user["beta 0"] == by_user["beta 1"] == f"/threads/{b.conv.thread_id}/messages"
    else:
        for request in fake.core.requests("POST", "/chat/completions"):
            users = [m["content"] for m in request.body["messages"] if m["role"] == "user"]
            assert len({u.split()[0] for u in users}) == 1, users  # never the other tab's history


async def test_responses_close_and_reset_delete_the_conversation(fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    session = live_runtime("responses").new_session()
    await run_turn(session, "hi")
    first = session.conv.conversation_id
    assert first and fake.core.live_objects("conversation") == [first]
    await session.reset()
    assert [r.path for r in fake.core.requests("DELETE")] == [f"/conversations/{first}"]
    assert fake.core.live_objects("conversation") == []
    await run_turn(session, "hi again")
    second = session.conv.conversation_id
    assert second and second != first
    await session.close()
    assert fake.core.live_objects("conversation") == []
    assert [r.path for r in fake.core.requests("DELETE")][-1] == f"/conversations/{second}"


async def test_assistants_close_and_reset_delete_the_thread(fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    session = live_runtime("assistants").new_session()
    await run_turn(session, "hi")
    first = session.conv.thread_id
    assert first and fake.core.live_objects("thread") == [first]
    await session.reset()
    assert fake.core.live_objects("thread") == []
    await run_turn(session, "hi again")
    second = session.conv.thread_id
    assert second and second != first
    await session.close()
    assert fake.core.live_objects("thread") == []
    assert [r.path for r in fake.core.requests("DELETE", "/threads")] == [f"/threads/{first}", f"/threads/{second}"]


async def test_shutdown_deletes_the_assistant_it_created(fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    runtime = live_runtime("assistants")
    await runtime.start()
    created = fake.core.live_objects("assistant")
    assert len(created) == 1
    session = runtime.new_session()
    runtime.sessions["tab-1"] = session  # as the UI registers an open tab
    await run_turn(session, "hi")
    run = fake.core.requests("POST", "/runs")[0]
    assert run.body["assistant_id"] == created[0]
    await runtime.shutdown()
    assert fake.core.live_objects("assistant") == []
    assert fake.core.live_objects("thread") == []  # the open tab's thread went too
    assert f"/assistants/{created[0]}" in [r.path for r in fake.core.requests("DELETE")]


async def test_shutdown_keeps_an_assistant_given_in_the_config(fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    runtime = live_runtime("assistants", config=BASE_CONFIG + "assistant_id: asst_given\n")
    await runtime.start()
    session = runtime.new_session()
    assert (await run_turn(session, "hi"))[-1] == "Echo: hi"
    assert fake.core.requests("POST", "/runs")[0].body["assistant_id"] == "asst_given"
    await session.close()
    await runtime.shutdown()
    assert fake.core.requests("POST", "/assistants") == []
    assert fake.core.requests("DELETE", "/assistants") == []


# -- coalescing --------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_ui_updates_are_coalesced(api: str, fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    text = "".join(f"word{i} " for i in range(300))
    deltas = synth.split_text(text, 3)
    fake.core.speed = 1.0
    fake.push(Script(events=stream(api, deltas, step=0.001)))  # ~0.8 s, hundreds of deltas
    coalesced = await run_turn(live_runtime(api, coalesce=0.05).new_session(), "hi")
    assert coalesced[-1] == text
    assert 2 <= len(coalesced) <= len(deltas) / 10
    # Without coalescing the same stream gives one value per delta: the ratio is the point.
    fake.core.speed = 0.0
    fake.push(Script(events=stream(api, deltas)))
    every = await run_turn(live_runtime(api, coalesce=0.0).new_session(), "hi")
    assert every[-1] == text
    assert len(every) >= len(deltas)


async def test_a_broken_assistants_stream_cancels_its_run(fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    """A stream that breaks mid-run leaves the run active on the server; without a
    cancel, the thread's next message would be refused while that run is going."""
    deltas = synth.split_text("Half an answer, then the connection goes.", 4)
    fake.push(FaultScript(events=stream("assistants", deltas, run_id="run_broken"), drop_after=8))
    runtime = live_runtime("assistants")
    session = runtime.new_session()
    await run_turn(session, "hi")
    assert session.last_status == "interrupted"
    await runtime.shutdown()  # waits for the background cancel
    thread_id = session.conv.thread_id
    assert [r.path for r in fake.core.requests("POST", "/cancel")] == [f"/threads/{thread_id}/runs/run_broken/cancel"]


async def test_a_completed_assistants_run_is_not_cancelled(fake: Fake, live_runtime: Callable[..., Runtime]) -> None:
    runtime = live_runtime("assistants")
    session = runtime.new_session()
    assert (await run_turn(session, "hi"))[-1] == "Echo: hi"
    await runtime.shutdown()
    assert fake.core.requests("POST", "/cancel") == []
