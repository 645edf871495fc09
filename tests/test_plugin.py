"""The pytest plugin from an outside project's point of view: a temporary project (pytester)
with its own tests records them against the loopback fake server, then replays them with
the server out of reach."""

from __future__ import annotations

import importlib.metadata
import json
import socket
from pathlib import Path

import pytest
from conftest import ROOT, TEST_KEY, Fake

pytest_plugins = ["pytester"]

OUTSIDE_TESTS = """
import pytest


@pytest.mark.streamchat_recording("recordings/chat.jsonl")
def test_sync_chat_stream(streamchat_replay):
    stream = streamchat_replay.client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "Hello there"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Echo: Hello there"


@pytest.mark.streamchat_recording("recordings/responses.jsonl")
async def test_async_responses_stream(streamchat_replay):
    client = streamchat_replay.async_client
    first = await client.responses.create(model="test-model", input="Count to three", stream=True)
    text, response_id = "", None
    async for event in first:
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            response_id = event.response.id
    assert text == "Echo: Count to three"
    async with client.responses.stream(model="test-model", input="And to four?", previous_response_id=response_id) as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Echo: And to four?"
"""

UNRECORDED = """
import pytest


@pytest.mark.streamchat_recording("recordings/chat.jsonl")
def test_new_prompt(streamchat_replay):
    try:
        stream = streamchat_replay.client.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": "A question nobody recorded"}], stream=True
        )
        "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    except Exception:
        pass  # the code under test swallows the error: the test must still fail
"""


def dead_url() -> str:
    """A base URL where nothing listens (the "network" of an offline CI run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def outside(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project of its own: its tests, its ini, and this checkout importable (as an
    editable install would make it; the entry point itself is checked from a venv)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("STREAMCHAT_RECORD_MODE", raising=False)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_outside=OUTSIDE_TESTS)
    return pytester


def _installed() -> bool:
    return any(ep.value == "streamchat.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in the outside project. Installed (``pip install -e``), the plugin comes from
    its ``pytest11`` entry point as a user gets it; from a bare checkout it is named."""
    plugin = () if _installed() else ("-p", "streamchat.pytest_plugin")
    return pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", *args)


def test_record_once_then_replay_offline(outside: pytest.Pytester, fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    recorded = run(outside, "--streamchat-record-mode=once")
    recorded.assert_outcomes(passed=2)
    assert len(fake.requests_seen) == 3  # every turn went to the server once

    files = sorted((outside.path / "recordings").iterdir())
    assert [f.name for f in files] == ["chat.jsonl", "responses.jsonl"]
    for f in files:
        text = f.read_text()
        assert TEST_KEY not in text and "authorization" not in text.lower()
    chat_lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert chat_lines[0]["api"] == "chat" and chat_lines[1] == {
        "kind": "turn",
        "turn": 0,
        "user": "Hello there",
        "position": 0,
        "model": "test-model",
        "at": 0.0,  # the turn's start since the session's first (demo mode's pauses)
    }
    responses_turns = [o for o in map(json.loads, files[1].read_text().splitlines()) if o["kind"] == "turn"]
    assert [(t["user"], t["position"]) for t in responses_turns] == [("Count to three", 0), ("And to four?", 1)]

    # Offline: the server is out of reach and the key gone; the default mode replays.
    fake.requests_seen.clear()
    monkeypatch.setenv("OPENAI_BASE_URL", dead_url())
    monkeypatch.delenv("OPENAI_API_KEY")
    replayed = run(outside)
    replayed.assert_outcomes(passed=2)
    assert fake.requests_seen == []
    # once with the files there replays too, and leaves them as they were
    before = [f.read_bytes() for f in files]
    run(outside, "--streamchat-record-mode=once").assert_outcomes(passed=2)
    assert [f.read_bytes() for f in files] == before and fake.requests_seen == []


def test_unrecorded_prompt_fails_naming_it(outside: pytest.Pytester, fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    run(outside, "--streamchat-record-mode=once", "test_outside.py::test_sync_chat_stream").assert_outcomes(passed=1)
    outside.makepyfile(test_new=UNRECORDED)
    monkeypatch.setenv("OPENAI_BASE_URL", dead_url())
    result = run(outside, "test_new.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*no recorded turn answers “A question nobody recorded” (chat API, position 0, model test-model)*",
            "*Recorded prompts:*",
            "*- Hello there (chat, position 0, model test-model)*",
        ]
    )


def test_mode_none_without_a_file_fails_and_touches_nothing(outside: pytest.Pytester, fake: Fake) -> None:
    result = run(outside, "test_outside.py::test_sync_chat_stream")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no recording at *chat.jsonl (record mode none)*--streamchat-record-mode=once*"])
    assert fake.requests_seen == [] and not (outside.path / "recordings").exists()


def test_new_episodes_records_only_what_is_new(outside: pytest.Pytester, fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    run(outside, "test_outside.py::test_sync_chat_stream", "--streamchat-record-mode=all").assert_outcomes(passed=1)
    outside.makepyfile(
        test_outside=OUTSIDE_TESTS
        + """

@pytest.mark.streamchat_recording("recordings/chat.jsonl")
def test_two_prompts(streamchat_replay):
    for prompt in ("Hello there", "Something new"):
        stream = streamchat_replay.client.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": prompt}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "Echo: " + prompt
"""
    )
    fake.requests_seen.clear()
    run(outside, "test_outside.py::test_two_prompts", "--streamchat-record-mode=new_episodes").assert_outcomes(passed=1)
    assert [r.user for r in fake.requests_seen] == ["Something new"]  # the recorded one was replayed
    turns = [json.loads(line) for line in (outside.path / "recordings/chat.jsonl").read_text().splitlines()]
    assert [(o["turn"], o["user"]) for o in turns if o["kind"] == "turn"] == [(0, "Hello there"), (1, "Something new")]
    fake.requests_seen.clear()
    monkeypatch.setenv("OPENAI_BASE_URL", dead_url())
    run(outside, "test_outside.py::test_sync_chat_stream", "test_outside.py::test_two_prompts").assert_outcomes(passed=2)
    assert fake.requests_seen == []


def test_record_mode_all_replaces_the_file_and_env_sets_the_mode(
    outside: pytest.Pytester, fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    path = outside.path / "recordings/chat.jsonl"
    run(outside, "test_outside.py::test_sync_chat_stream", "--streamchat-record-mode=once").assert_outcomes(passed=1)
    fake.responder = lambda req: __import__("conftest").text_script(req.api, f"Echo: {req.user}", size=1)
    monkeypatch.setenv("STREAMCHAT_RECORD_MODE", "all")
    fake.requests_seen.clear()
    run(outside, "test_outside.py::test_sync_chat_stream").assert_outcomes(passed=1)
    assert len(fake.requests_seen) == 1
    deltas = [o for o in map(json.loads, path.read_text().splitlines()) if o["kind"] == "event"]
    assert len(deltas) == len("Echo: Hello there") + 4  # role, one event per character, finish, usage, [DONE]


def test_matching_rule_model_and_position(outside: pytest.Pytester, fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    run(outside, "test_outside.py::test_sync_chat_stream", "--streamchat-record-mode=once").assert_outcomes(passed=1)
    outside.makepyfile(
        test_rules="""
import pytest


def ask(client, model, messages):
    stream = client.chat.completions.create(model=model, messages=messages, stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


@pytest.mark.streamchat_recording("recordings/chat.jsonl")
def test_text_only_ignores_model_and_position(streamchat_replay):
    history = [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "ok"}]
    assert ask(streamchat_replay.client, "other-model", history + [{"role": "user", "content": "hello THERE!"}]) == "Echo: Hello there"


@pytest.mark.streamchat_recording("recordings/chat.jsonl", match="text model")
def test_model_counts(streamchat_replay):
    ask(streamchat_replay.client, "other-model", [{"role": "user", "content": "Hello there"}])


@pytest.mark.streamchat_recording("recordings/chat.jsonl", match=("text", "position"))
def test_position_counts(streamchat_replay):
    history = [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "ok"}]
    ask(streamchat_replay.client, "test-model", history + [{"role": "user", "content": "Hello there"}])
"""
    )
    monkeypatch.setenv("OPENAI_BASE_URL", dead_url())
    result = run(outside, "test_rules.py")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*“Hello there” (chat API, position 0, model other-model) in chat.jsonl, matching on text + model.",
            "*“Hello there” (chat API, position 1, model test-model) in chat.jsonl, matching on text + position.",
        ]
    )


def test_recorded_pace_with_speed(outside: pytest.Pytester, fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """At --streamchat-speed 1 the replay keeps the recorded gaps (the fake server paced
    its stream at 0.05 s an event while it was recorded)."""
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    from conftest import text_script

    from streamchat.testing import synth

    def paced(req):  # type: ignore[no-untyped-def]
        script = text_script(req.api, "one two three four", size=4)
        script.events = synth.timed([raw for _, raw in script.events], step=0.05)
        return script

    fake.responder = paced
    fake.core.speed = 1.0
    outside.makepyfile(
        test_pace="""
import time
import pytest


@pytest.mark.streamchat_recording("recordings/pace.jsonl")
def test_pace(streamchat_replay, record_property):
    stream = streamchat_replay.client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "pace"}], stream=True
    )
    times = [time.monotonic() for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    print("SPREAD", times[-1] - times[0])
"""
    )
    run(outside, "test_pace.py", "--streamchat-record-mode=once").assert_outcomes(passed=1)
    monkeypatch.setenv("OPENAI_BASE_URL", dead_url())

    def spread(*args: str) -> float:
        result = run(outside, "test_pace.py", "-s", *args)
        result.assert_outcomes(passed=1)
        line = next(line for line in result.outlines if line.startswith("SPREAD") or "SPREAD" in line)
        return float(line.split("SPREAD")[1].split()[0])

    recorded = [
        o["t"]
        for o in map(json.loads, Path(outside.path / "recordings/pace.jsonl").read_text().splitlines())
        if o.get("kind") == "event"
    ]
    assert recorded[-1] - recorded[0] >= 0.15  # the proxy kept the server's pacing
    assert spread("--streamchat-speed=1") >= 0.1
