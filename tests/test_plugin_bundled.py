"""The project's own tests on the pytest plugin: bundled recordings replayed through the
``streamchat_replay`` fixture (the replay-server route tests, written as a user of the
plugin would write them)."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest
from conftest import ROOT
from test_replay_server import recorded_text

from streamchat.recording import load_recording
from streamchat.sse import SSEDecoder

MULTI_TURN = ROOT / "recordings" / "02-multi-turn.jsonl"
CHAT = ROOT / "recordings" / "06-backend-chat.jsonl"


@pytest.mark.streamchat_recording("../recordings/02-multi-turn.jsonl")
async def test_responses_chain_replays_each_turn(streamchat_replay: Any) -> None:
    client: openai.AsyncOpenAI = streamchat_replay.async_client
    previous: Any = openai.NOT_GIVEN
    for turn in load_recording(MULTI_TURN).turns:
        async with client.responses.stream(model="gpt-5-mini", input=turn.user, previous_response_id=previous) as stream:
            final = await stream.get_final_response()
        assert final.output_text == recorded_text("responses", turn)
        previous = final.id
    assert streamchat_replay.misses == []


@pytest.mark.streamchat_recording("../recordings/06-backend-chat.jsonl")
def test_chat_replays_with_the_sync_client(streamchat_replay: Any) -> None:
    (turn,) = load_recording(CHAT).turns
    stream = streamchat_replay.client.chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": turn.user.upper() + "  "}], stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == recorded_text("chat", turn)
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


@pytest.mark.streamchat_recording("../recordings/06-backend-chat.jsonl")
def test_base_url_serves_any_http_client_the_recorded_sse(streamchat_replay: Any) -> None:
    """Not the SDK: bare HTTP, as a client in another language would do it."""
    (turn,) = load_recording(CHAT).turns
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": turn.user}]}
    decoder, events = SSEDecoder(), []
    with httpx2.Client() as http, http.stream("POST", streamchat_replay.base_url + "/chat/completions", json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_bytes():
            events += decoder.feed(chunk)
    assert [raw for _, raw in turn.streams[0].events] == events + decoder.flush()
