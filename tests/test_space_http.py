"""A public Space over real HTTP: the app launched on 127.0.0.1 and driven by
`gradio_client` (each client its own browser session, its address set by the
``X-Forwarded-For`` header the Spaces proxy adds), against the fake OpenAI server,
whose log shows what reached the provider; and the vote handler the page calls."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BASE_CONFIG, Fake, make_settings, replay_settings, run_turn, text_script
from gradio_client import Client

from streamchat.backends import BACKENDS
from streamchat.backends.base import TurnContext
from streamchat.config import parse_config
from streamchat.guard import parse_limits
from streamchat.recording import RecordingWriter, header, load_recording
from streamchat.replayapi import Script
from streamchat.session import Runtime, make_client
from streamchat.spaces import FeedbackLog, warn_if_unprotected
from streamchat.testing import synth
from streamchat.ui import CONCURRENCY_LIMIT, build_demo

TOOL_CONFIG = (
    BASE_CONFIG
    + """
tools:
  - name: get_time
    description: The time in a time zone.
    handler: streamchat.demo_tools:get_time
    parameters:
      type: object
      properties:
        timezone: {type: string}
      required: [timezone]
      additionalProperties: false
"""
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[str]:
    """``build_demo(runtime)`` launched as app.py launches it, on a free loopback port."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    for name in ("SPACE_ID", "SYSTEM", "OAUTH_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    demo = build_demo(runtime)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def chat(url: str, message: str, **headers: str) -> str:
    """One message from a new session; the final answer as text."""
    client = Client(url, headers=headers or None, verbose=False)
    try:
        result = client.predict({"text": message}, api_name="/chat")
    finally:
        client.close()
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def users_seen(fake: Fake) -> list[str]:
    return [req.user for req in fake.requests_seen]


# -- rate limits and the daily cap ----------------------------------------------------


def test_a_visitor_over_the_rate_limit_is_answered_at_once_and_nothing_reaches_the_provider(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings("chat", url=fake.url, rate_limits=parse_limits("3/minute"), daily_requests=5)
    with served(Runtime(settings), monkeypatch, SPACE_ID="someone/assistant") as url:
        a = {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"}
        answers = [chat(url, f"a{n}", **a) for n in range(1, 6)]
        assert answers[:3] == ["Echo: a1", "Echo: a2", "Echo: a3"]
        for refused in answers[3:]:
            assert "limit of 3 messages a minute" in refused and "Try again in" in refused
            assert "duplicate this Space" in refused
        assert users_seen(fake) == ["a1", "a2", "a3"]  # the 4th and 5th never left the app

        # Another visitor is unaffected: the daily cap (5 for the whole app) ends the day.
        assert chat(url, "b1", **{"X-Forwarded-For": "198.51.100.9"}) == "Echo: b1"
        assert chat(url, "c1", **{"X-Forwarded-For": "192.0.2.44"}) == "Echo: c1"
        spent = chat(url, "c2", **{"X-Forwarded-For": "192.0.2.44"})
        assert "answered its 5 messages for today" in spent and "00:00 UTC" in spent
        assert users_seen(fake) == ["a1", "a2", "a3", "b1", "c1"]


def test_off_a_space_a_forwarded_header_counts_only_from_a_trusted_proxy(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a Space the visitor is the client address uvicorn reports, which follows
    ``X-Forwarded-For`` only from the proxies ``FORWARDED_ALLOW_IPS`` names (by default
    127.0.0.1, a local reverse proxy): here no proxy is trusted, so the header is ignored."""
    settings = make_settings("chat", url=fake.url, rate_limits=parse_limits("1/minute"))
    with served(Runtime(settings), monkeypatch, FORWARDED_ALLOW_IPS="192.0.2.1") as url:
        assert chat(url, "first", **{"X-Forwarded-For": "203.0.113.1"}) == "Echo: first"
        # A forged header does not make a new visitor: the client address counts.
        assert "limit of 1 message a minute" in chat(url, "second", **{"X-Forwarded-For": "203.0.113.2"})
        assert users_seen(fake) == ["first"]


# -- the allow-list -------------------------------------------------------------------


class MockedHub:
    """Stands in for the local Hugging Face login that Gradio's mocked OAuth reads (its
    ``_get_mocked_oauth_info`` calls hf.co): the profile of whoever ``user`` names."""

    def __init__(self) -> None:
        self.userinfo: dict[str, Any] = {}

    def sign_in_as(self, name: str, orgs: list[str] | None = None) -> None:
        self.userinfo.clear()
        self.userinfo.update(
            {
                "sub": "1",
                "name": name.title(),
                "preferred_username": name,
                "profile": f"https://huggingface.co/{name}",
                "picture": "",
                "orgs": [{"preferred_username": org, "name": org} for org in orgs or []],
            }
        )

    def info(self) -> dict[str, Any]:
        return {"access_token": "mock", "token_type": "bearer", "scope": "openid profile", "userinfo": self.userinfo}


def session_cookie(url: str) -> str:
    """Sign in through the app's own /login/huggingface route; the session cookie it sets."""
    with httpx.Client(base_url=url, follow_redirects=False) as http:
        response = http.get("login/huggingface")
        while response.is_redirect and "session" not in response.cookies:
            response = http.get(response.headers["location"])
        return f"session={response.cookies['session']}"


MOCKED_OAUTH = pytest.mark.filterwarnings("ignore:Gradio does not support OAuth features outside of a Space")


@MOCKED_OAUTH
def test_the_allow_list_refuses_a_user_not_on_it(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = MockedHub()
    monkeypatch.setattr("gradio.oauth._get_mocked_oauth_info", hub.info)
    settings = make_settings("chat", url=fake.url, allowed_users=frozenset({"alice"}), allowed_orgs=frozenset({"acme"}))
    runtime = Runtime(settings)
    with served(runtime, monkeypatch) as url:
        page = httpx.get(url + "config").json()
        assert any(c.get("props", {}).get("elem_id") == "sign-in" for c in page["components"])

        assert "sign in with the button above" in chat(url, "anonymous")
        hub.sign_in_as("mallory", orgs=["evil-corp"])
        refused = chat(url, "let me in", Cookie=session_cookie(url))
        assert "Sorry, mallory" in refused and "invited" in refused
        assert users_seen(fake) == []  # neither reached the provider

        hub.sign_in_as("alice")
        assert chat(url, "hello", Cookie=session_cookie(url)) == "Echo: hello"
        hub.sign_in_as("bob", orgs=["acme"])
        assert chat(url, "from acme", Cookie=session_cookie(url)) == "Echo: from acme"
        assert users_seen(fake) == ["hello", "from acme"]


@MOCKED_OAUTH
def test_signed_in_users_are_counted_by_name_not_by_address(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = MockedHub()
    monkeypatch.setattr("gradio.oauth._get_mocked_oauth_info", hub.info)
    settings = make_settings("chat", url=fake.url, rate_limits=parse_limits("1/minute"))
    with served(Runtime(settings), monkeypatch, OAUTH_CLIENT_ID="space-oauth-app") as url:
        hub.sign_in_as("alice")
        alice = session_cookie(url)
        hub.sign_in_as("bob")
        bob = session_cookie(url)
        assert chat(url, "alice 1", Cookie=alice) == "Echo: alice 1"
        assert chat(url, "bob 1", Cookie=bob) == "Echo: bob 1"  # same address, another user
        assert "limit of 1 message a minute" in chat(url, "alice 2", Cookie=alice)
        assert users_seen(fake) == ["alice 1", "bob 1"]


# -- the output-token cap -------------------------------------------------------------


def caps_sent(fake: Fake, api: str) -> list[dict[str, Any]]:
    """The cap parameters of every request that makes the model answer."""
    names = ("max_output_tokens", "max_completion_tokens", "max_tokens")
    if api == "responses":
        bodies = [r.body for r in fake.core.requests("POST", "/responses")]
    elif api == "chat":
        bodies = [r.body for r in fake.core.requests("POST", "/chat/completions")]
    else:
        bodies = [r.body for r in fake.core.requests("POST", "/runs") if r.path.endswith("/runs")]
    return [{k: body[k] for k in names if k in body} for body in bodies]


def tool_round(api: str) -> list[Script]:
    call = synth.FunctionCall("get_time", '{"timezone": "Asia/Tokyo"}', call_id="call_1")
    if api == "responses":
        first = synth.responses_stream(calls=[call])
    elif api == "assistants":
        first = synth.assistants_stream(calls=[call], end="requires_action", run_id="run_1")
    else:
        first = synth.chat_stream(calls=[call], finish_reason="tool_calls")
    kw: dict[str, Any] = {"continuing": True, "run_id": "run_1"} if api == "assistants" else {}
    return [Script(events=synth.timed(first, step=0)), text_script(api, "It is noon.", **kw)]


EXPECTED_CAP = {
    "responses": {"max_output_tokens": 64},
    "assistants": {"max_completion_tokens": 64},
    # The fake server is a compatible server, not OpenAI: the older name goes along.
    "chat": {"max_completion_tokens": 64, "max_tokens": 64},
}


@pytest.mark.parametrize("api", ["responses", "assistants", "chat"])
async def test_every_request_carries_the_output_token_cap_in_the_apis_own_parameter(fake: Fake, api: str) -> None:
    runtime = Runtime(make_settings(api, url=fake.url, config=TOOL_CONFIG, max_output_tokens=64))
    session = runtime.new_session()
    fake.push(*tool_round(api))
    await run_turn(session, "What time is it in Tokyo?")
    history = [{"role": "user", "content": "What time is it in Tokyo?"}, {"role": "assistant", "content": "It is noon."}]
    await run_turn(session, "And now?", history)
    sent = caps_sent(fake, api)
    # Responses and Chat: both tool rounds and the next turn; Assistants: each run
    # (its cap covers the run's tool rounds: submit_tool_outputs takes none).
    assert len(sent) == (2 if api == "assistants" else 3)
    assert sent == [EXPECTED_CAP[api]] * len(sent)
    if api == "assistants":
        assert fake.core.requests("POST", "/submit_tool_outputs")
    await session.close()


async def test_no_cap_is_sent_unless_one_is_set(fake: Fake) -> None:
    session = Runtime(make_settings("chat", url=fake.url)).new_session()
    await run_turn(session, "hi")
    assert caps_sent(fake, "chat") == [{}]


def test_openai_itself_gets_only_max_completion_tokens_on_chat() -> None:
    config = parse_config(BASE_CONFIG)
    ctx = TurnContext(max_output_tokens=100)
    openai_chat = BACKENDS["chat"](make_client(make_settings("chat", api_key="sk-unused")), config)
    assert openai_chat.token_cap(ctx) == {"max_completion_tokens": 100}
    local = BACKENDS["chat"](make_client(make_settings("chat", url="http://localhost:11434/v1")), config)
    assert local.token_cap(ctx) == {"max_completion_tokens": 100, "max_tokens": 100}
    assert local.token_cap(TurnContext()) == {}


# -- feedback -------------------------------------------------------------------------


def test_votes_are_recording_lines_the_reader_keeps_the_last_of(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    writer = RecordingWriter(path, header("responses", "m", "0"))
    assert not writer.feedback(0, "like")  # no turn yet: nothing to vote on
    writer.begin_turn("first")
    writer.end_turn("completed")
    writer.begin_turn("second")
    assert writer.feedback(0, "like") and writer.feedback(1, "dislike")  # a vote during turn 1
    writer.end_turn("completed")
    assert writer.feedback(1, None) and writer.feedback(0, "dislike") and writer.feedback(0, "like")
    assert not writer.feedback(2, "like")
    writer.close()
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    votes = [line for line in lines if line["kind"] == "feedback"]
    assert [(v["turn"], v["value"]) for v in votes] == [(0, "like"), (1, "dislike"), (1, None), (0, "dislike"), (0, "like")]
    assert all(v["time"].endswith("Z") and set(v) == {"kind", "turn", "value", "time"} for v in votes)
    recording = load_recording(path)
    assert [t.feedback for t in recording.turns] == ["like", None] and recording.problems == []


def test_votes_without_a_recording_go_to_the_feedback_log(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "feedback" / "feedback.jsonl")
    assert log.add("s1", 0, "like", api="chat", model="m")
    assert log.add("s2", 3, None, api="chat", model="m")
    lines = [json.loads(line) for line in log.path.read_text(encoding="utf-8").splitlines()]
    assert [(line["session"], line["turn"], line["value"]) for line in lines] == [("s1", 0, "like"), ("s2", 3, None)]
    assert lines[0]["kind"] == "feedback" and lines[0]["api"] == "chat" and "user" not in lines[0]


def test_replay_shows_the_vote_a_recorded_answer_got(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    turns = [
        synth.SynthTurn("Liked?", [synth.timed(synth.responses_stream(["Yes, ", "liked."]), step=0)]),
        synth.SynthTurn("Disliked?", [synth.timed(synth.responses_stream(["Sadly, ", "disliked."]), step=0)]),
        synth.SynthTurn("Unrated?", [synth.timed(synth.responses_stream(["No ", "vote."]), step=0)]),
    ]
    lines = synth.recording_lines("responses", turns, title="Votes")
    lines += [
        {"kind": "feedback", "turn": 0, "value": "like", "time": "2026-12-01T10:00:00Z"},
        {"kind": "feedback", "turn": 1, "value": "like", "time": "2026-12-01T10:00:01Z"},
        {"kind": "feedback", "turn": 1, "value": "dislike", "time": "2026-12-01T10:00:02Z"},
    ]
    (tmp_path / "votes.jsonl").write_text(synth.dump_lines(lines), encoding="utf-8")
    runtime = Runtime(replace(replay_settings(tmp_path), coalesce=0.0))
    with served(runtime, monkeypatch) as url:
        liked = chat(url, "Liked?")
        assert "Yes, liked." in liked and "👍 Liked when it was recorded" in liked
        assert "👎 Disliked when it was recorded" in chat(url, "Disliked?")
        assert chat(url, "Unrated?") == "No vote."


def test_a_live_space_without_limits_says_so_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    space = {"SPACE_ID": "someone/assistant"}
    with caplog.at_level("WARNING", logger="streamchat"):
        warn_if_unprotected(Runtime(make_settings("chat", url="http://127.0.0.1:9/v1")), space)
        assert "no limits" in caplog.text and "public Space checklist" in caplog.text
        caplog.clear()
        limited = make_settings("chat", url="http://127.0.0.1:9/v1", rate_limits=parse_limits("5/minute"))
        warn_if_unprotected(Runtime(limited), space)
        warn_if_unprotected(Runtime(make_settings("chat", url="http://127.0.0.1:9/v1")), {})
        assert caplog.text == ""


async def test_a_vote_on_an_unrecorded_answer_goes_to_the_log_and_one_on_a_refusal_nowhere(fake: Fake, tmp_path: Path) -> None:
    """The like handler itself (Gradio calls it with the chat and a ``LikeData``): a
    chat whose recording is paused keeps its votes in the feedback log of the folder."""
    import gradio as gr

    from streamchat.ui import SessionSlot

    runtime = Runtime(make_settings("chat", url=fake.url, record_dir=tmp_path))
    demo = build_demo(runtime)
    like = next(f.fn for f in demo.fns.values() if f.fn is not None and f.fn.__name__ == "on_like")
    slot = SessionSlot()
    history = [
        {"role": "user", "content": "q0"},
        {"role": "assistant", "content": "a0"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "⏳ limit"},
    ]
    slot.local.add(1)  # the second message was refused
    await like(gr.LikeData(None, {"index": 1, "value": ["a0"], "liked": True}), history, slot)
    await like(gr.LikeData(None, {"index": 3, "value": ["⏳ limit"], "liked": False}), history, slot)
    await like(gr.LikeData(None, {"index": 1, "value": ["a0"], "liked": ""}), history, slot)
    lines = [json.loads(line) for line in (tmp_path / "feedback" / "feedback.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(line["turn"], line["value"]) for line in lines] == [(0, "like"), (0, None)]
    assert {line["session"] for line in lines} == {slot.feedback_id} and lines[0]["model"] == "test-model"
    assert list(tmp_path.glob("*.jsonl")) == []  # no recording was started for it
