"""``python -m streamchat.replay_server``: the bundled recordings served over real HTTP
on 127.0.0.1, streamed with the real `openai` client on every API route."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import ROOT

from streamchat.recording import RecordedTurn, Recording, load_recording
from streamchat.replay import Player
from streamchat.replay_server import UnionSource, main
from streamchat.replayapi import TurnRequest

BUNDLED = ROOT / "recordings"


def recorded_text(api: str, turn: RecordedTurn) -> str:
    """The answer text a turn's events carry, read straight from the wire format."""
    out = []
    for stream in turn.streams:
        for _, raw in stream.events:
            data = raw.data
            if not isinstance(data, dict):
                continue
            if api == "responses" and raw.event == "response.output_text.delta":
                out.append(data["delta"])
            elif api == "assistants" and raw.event == "thread.message.delta":
                out += [part["text"]["value"] for part in data["delta"]["content"]]
            elif api == "chat":
                out += [c["delta"].get("content") or "" for c in data.get("choices") or []]
    return "".join(out)


def bundled(api: str) -> list[Recording]:
    """The bundled recordings of an API whose turns all complete."""
    out = []
    for path in sorted(BUNDLED.glob("*.jsonl")):
        recording = load_recording(path)
        if recording.api == api and all(t.status == "completed" for t in recording.turns):
            out.append(recording)
    assert out, f"no bundled {api} recording"
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamchat.replay_server", str(BUNDLED), "--port", str(port), "--speed", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:  # ends if the process dies
            if line.startswith("http://"):
                url = line.strip()
                break
        assert url == f"http://127.0.0.1:{port}/v1", proc.stderr.read() if proc.stderr else ""
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url, api_key="any-key", max_retries=0)


def tool_outputs(turn: RecordedTurn) -> list[tuple[str, str]]:
    return list(turn.tool_outputs.items())


async def test_responses_route_streams_each_turn_in_a_conversation(server_url: str) -> None:
    api = client(server_url)
    for recording in bundled("responses"):
        conversation = await api.conversations.create()
        for turn in recording.turns:
            text, types = "", []
            request: Any = {"input": turn.user}
            for _ in turn.streams:  # a tool loop: one request per recorded stream
                stream = await api.responses.create(model="m", conversation=conversation.id, stream=True, **request)
                async for event in stream:
                    types.append(event.type)
                    if event.type == "response.output_text.delta":
                        text += event.delta
                outputs = [{"type": "function_call_output", "call_id": c, "output": o} for c, o in tool_outputs(turn)]
                request = {"input": outputs}
            assert text == recorded_text("responses", turn), recording.name
            assert types[0] == "response.created" and types[-1] == "response.completed"
    await api.close()


async def test_responses_route_chains_previous_response_id(server_url: str) -> None:
    api = client(server_url)
    recording = next(r for r in bundled("responses") if len(r.turns) > 1)
    previous: Any = openai.NOT_GIVEN
    for turn in recording.turns:
        stream = await api.responses.create(model="m", input=turn.user, previous_response_id=previous, stream=True)
        text = ""
        async for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.completed":
                previous = event.response.id
        assert text == recorded_text("responses", turn)
    await api.close()


async def test_assistants_route_streams_each_turn_on_a_thread(server_url: str) -> None:
    api = client(server_url)
    assistant = await api.beta.assistants.create(model="m")
    threads = api.beta.threads
    for recording in bundled("assistants"):
        thread = await threads.create()
        for turn in recording.turns:
            await threads.messages.create(thread.id, role="user", content=turn.user)
            stream: Any = await threads.runs.create(thread.id, assistant_id=assistant.id, stream=True)
            text, names, run_id = "", [], ""
            for n in range(len(turn.streams)):
                if n:
                    outputs: Any = [{"tool_call_id": c, "output": o} for c, o in tool_outputs(turn)]
                    stream = await threads.runs.submit_tool_outputs(
                        run_id, thread_id=thread.id, tool_outputs=outputs, stream=True
                    )
                async for event in stream:
                    names.append(event.event)
                    if event.event.startswith("thread.run.") and not event.event.startswith("thread.run.step"):
                        run_id = event.data.id
                    if event.event == "thread.message.delta":
                        text += "".join(part.text.value or "" for part in event.data.delta.content or [] if part.type == "text")
            assert text == recorded_text("assistants", turn), recording.name
            assert names[-1] == "thread.run.completed" and run_id
    await api.close()


async def test_chat_route_streams_each_turn_with_its_history(server_url: str) -> None:
    api = client(server_url)
    for recording in bundled("chat"):
        messages: list[Any] = [{"role": "system", "content": "Be brief."}]
        for turn in recording.turns:
            messages.append({"role": "user", "content": turn.user})
            text, finish = "", None
            for n in range(len(turn.streams)):
                if n:
                    calls = [
                        {"id": c, "type": "function", "function": {"name": "f", "arguments": "{}"}} for c, _ in tool_outputs(turn)
                    ]
                    messages.append({"role": "assistant", "content": None, "tool_calls": calls})
                    messages += [{"role": "tool", "tool_call_id": c, "content": o} for c, o in tool_outputs(turn)]
                stream = await api.chat.completions.create(model="m", messages=messages, stream=True)
                async for chunk in stream:
                    for choice in chunk.choices:
                        text += choice.delta.content or ""
                        finish = choice.finish_reason or finish
            assert text == recorded_text("chat", turn) and finish == "stop", recording.name
            messages.append({"role": "assistant", "content": text})
    await api.close()


async def test_unmatched_prompt_gets_a_404_listing_the_prompts(server_url: str) -> None:
    api = client(server_url)
    with pytest.raises(openai.NotFoundError) as caught:
        await api.chat.completions.create(model="m", messages=[{"role": "user", "content": "Who won in 1966?"}], stream=True)
    message = str(caught.value)
    assert "Who won in 1966?" in message
    for recording in bundled("chat"):
        for prompt in recording.prompts:
            assert f"- {prompt}" in message
    with pytest.raises(openai.NotFoundError, match="Hello! What can you do"):
        await api.responses.create(model="m", input="Who won in 1966?", stream=True)
    await api.close()


def test_union_source_serves_the_first_recording_that_matches() -> None:
    first = load_recording(BUNDLED / "01-welcome.jsonl", name="a")
    second = load_recording(BUNDLED / "01-welcome.jsonl", name="b")
    second.turns[0].streams[0].events = second.turns[0].streams[0].events[:1]
    other = load_recording(BUNDLED / "06-backend-chat.jsonl")
    source = UnionSource([Player(first), Player(second), Player(other)])
    script = source(TurnRequest("responses", "hello! what can you do", 0, 0, {}))
    assert len(script.events) == len(first.turns[0].streams[0].events)
    script = source(TurnRequest("chat", other.prompts[0], 0, 0, {}))
    assert script.events == other.turns[0].streams[0].events
    assert source.prompts("responses") == first.prompts  # each listed once
    # A prompt recorded for another API is not served on this route.
    wrong = source(TurnRequest("chat", first.prompts[0], 0, 0, {}))
    assert wrong.status == 404 and f"- {other.prompts[0]}" in wrong.error["message"]  # type: ignore[index]
    assert "- Hello! What can you do" not in wrong.error["message"]  # type: ignore[index]


def test_help_and_bad_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for flag in ("PATH", "--port", "--speed", "--max-gap", "127.0.0.1"):
        assert flag in shown
    assert main([str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text("not json\n")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad: line 1: the header is not valid JSON" in err and "no playable recording" in err
    assert main([str(BUNDLED), "--speed", "-1"]) == 2
