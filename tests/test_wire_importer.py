"""``python -m streamchat.importer``: raw SSE, vcrpy cassettes, HAR files and session
records become recordings marked ``source: imported`` with their provenance, which
replay through the app (over real HTTP from the replay server) and are labelled apart
in the UI."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, replay_settings, turn_transcript

from streamchat.importer import main
from streamchat.recording import load_recording
from streamchat.session import Runtime
from streamchat.sse import frame_raw
from streamchat.testing import synth
from streamchat.ui import banner_text

ANSWER = "Imported answers replay like recorded ones."
PROVENANCE = ["--repository", "example/captures", "--path", "streams/x", "--commit", "0" * 40]


def sse_bytes(events: list[Any]) -> bytes:
    return b"".join(frame_raw(raw) for raw in events)


def responses_body() -> bytes:
    return sse_bytes(synth.responses_stream(synth.split_text(ANSWER, 6)))


def write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def run_import(tmp_path: Path, capture: Path, *extra: str) -> Path:
    out = tmp_path / "imported.jsonl"
    assert main([str(capture), str(out), *PROVENANCE, *extra]) == 0
    return out


async def replayed_text(path: Path, user: str) -> tuple[str, str | None]:
    runtime = Runtime(replay_settings(path))
    session = runtime.new_session()
    transcript = await turn_transcript(session, user)
    await session.close()
    return transcript.text, transcript.status


async def test_raw_sse_capture(tmp_path: Path) -> None:
    capture = write(tmp_path / "stream.sse", responses_body())
    out = run_import(tmp_path, capture, "--user", "What is this?")
    recording = load_recording(out)
    assert recording.problems == [] and recording.api == "responses"
    head = recording.header
    assert head["source"] == "imported" and not recording.synthetic
    assert head["provenance"]["repository"] == "example/captures"
    assert head["provenance"]["commit"] == "0" * 40
    assert head["provenance"]["sha256"] == hashlib.sha256(capture.read_bytes()).hexdigest()
    assert head["provenance"]["format"] == "sse"
    assert [t.user for t in recording.turns] == ["What is this?"]
    assert await replayed_text(out, "What is this?") == (ANSWER, "completed")


async def test_vcr_cassette_with_a_tool_loop(tmp_path: Path) -> None:
    """A pytest-recording cassette of a Chat tool loop: two requests, one turn; the
    second request's tool message becomes the turn's recorded tool output."""
    call = synth.FunctionCall("get_time", '{"zone": "UTC"}', call_id="call_1")
    first = sse_bytes(synth.chat_stream(calls=[call], finish_reason="tool_calls")).decode()
    second = sse_bytes(synth.chat_stream(synth.split_text(ANSWER, 6))).decode()
    ask = {"model": "gpt-x", "messages": [{"role": "user", "content": "What time is it?"}], "stream": True}
    tool_call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": call.arguments}}
    answer = {
        **ask,
        "messages": [
            *ask["messages"],
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "12:00 UTC"},
        ],
    }

    def interaction(body: dict[str, Any], stream: str) -> dict[str, Any]:
        return {
            "request": {"method": "POST", "uri": "https://upstream.invalid/v1/chat/completions", "body": json.dumps(body)},
            "response": {
                "status": {"code": 200, "message": "OK"},
                "headers": {"Content-Type": ["text/event-stream; charset=utf-8"]},
                "body": {"string": stream},
            },
        }

    cassette = {"interactions": [interaction(ask, first), interaction(answer, second)], "version": 1}
    out = run_import(tmp_path, write(tmp_path / "cassette.yaml", yaml.safe_dump(cassette)))
    recording = load_recording(out)
    assert recording.api == "chat" and recording.header["model"] == "gpt-x"
    assert recording.header["provenance"]["format"] == "cassette"
    (turn,) = recording.turns
    assert turn.user == "What time is it?" and len(turn.streams) == 2 and turn.status == "completed"
    runtime = Runtime(replay_settings(out, config=replay_settings(out).config.with_overrides(backend="chat")))
    session = runtime.new_session()
    transcript = await turn_transcript(session, "What time is it?")
    await session.close()
    assert transcript.text == ANSWER and transcript.status == "completed"
    assert "12:00 UTC" in json.dumps(transcript.snapshot())  # the recorded tool output, not a new run


async def test_har_file_base64_body(tmp_path: Path) -> None:
    body = responses_body()
    har = {
        "log": {
            "entries": [
                {"request": {"method": "GET", "url": "https://upstream.invalid/v1/models"}, "response": {"status": 200}},
                {
                    "request": {
                        "method": "POST",
                        "url": "https://upstream.invalid/v1/responses",
                        "postData": {"text": json.dumps({"model": "gpt-y", "input": "Hello HAR", "stream": True})},
                    },
                    "response": {
                        "status": 200,
                        "content": {
                            "mimeType": "text/event-stream",
                            "encoding": "base64",
                            "text": base64.b64encode(body).decode(),
                        },
                    },
                },
            ]
        }
    }
    out = run_import(tmp_path, write(tmp_path / "x.har", json.dumps(har)))
    recording = load_recording(out)
    assert recording.header["provenance"]["format"] == "har"
    assert recording.header["provenance"]["exchanges"] == [1]
    assert recording.header["model"] == "gpt-y" and recording.turns[0].user == "Hello HAR"
    assert await replayed_text(out, "Hello HAR") == (ANSWER, "completed")


async def test_session_record_assistants(tmp_path: Path) -> None:
    """A test-proxy session record (openai-dotnet's format): the SSE body is a list of lines."""
    body = sse_bytes(synth.assistants_stream(synth.split_text(ANSWER, 6))).decode()
    lines = [line + "\n" for line in body.split("\n")][:-1]
    record = {
        "Entries": [
            {"RequestUri": "https://upstream.invalid/v1/threads", "RequestMethod": "POST", "StatusCode": 200, "ResponseBody": {}},
            {
                "RequestUri": "https://upstream.invalid/v1/threads/thread_1/runs",
                "RequestMethod": "POST",
                "RequestBody": json.dumps({"assistant_id": "asst_1", "stream": True}),
                "StatusCode": 200,
                "ResponseHeaders": {"Content-Type": "text/event-stream; charset=utf-8"},
                "ResponseBody": lines,
            },
        ],
        "Variables": {},
    }
    out = run_import(tmp_path, write(tmp_path / "record.json", json.dumps(record)), "--user", "Hi there")
    recording = load_recording(out)
    assert recording.api == "assistants" and recording.header["provenance"]["format"] == "session-record"
    assert await replayed_text(out, "Hi there") == (ANSWER, "completed")


def test_the_ui_labels_imported_recordings_apart(tmp_path: Path) -> None:
    capture = write(tmp_path / "stream.sse", responses_body())
    out = run_import(tmp_path, capture, "--user", "What is this?")
    imported = banner_text(Runtime(replay_settings(out)))
    assert "imported from a real capture" in imported and "example/captures" in imported
    synthetic = banner_text(Runtime(replay_settings(ROOT / "recordings" / "01-welcome.jsonl")))
    assert "synthetic" in synthetic and "imported" not in synthetic
    assert "exact" not in synthetic


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{}", "neither a HAR file"),
        ("interactions: []\n", "no streaming response"),
        ("just: text\n", "not a capture this importer knows"),
    ],
)
def test_bad_captures_are_one_line_errors(tmp_path: Path, content: str, says: str) -> None:
    capture = write(tmp_path / "bad", content)
    result = subprocess.run(
        [sys.executable, "-m", "streamchat.importer", str(capture), str(tmp_path / "o.jsonl"), "--url", "https://x.test/c"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and says in result.stderr, result.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_an_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    capture = write(tmp_path / "stream.sse", responses_body())
    out = write(tmp_path / "imported.jsonl", "keep me")
    assert main([str(capture), str(out), *PROVENANCE]) == 2
    assert out.read_text() == "keep me"


async def test_an_imported_recording_is_served_over_real_http_to_the_live_app(tmp_path: Path) -> None:
    """The replay server's source on 127.0.0.1 serves the imported turn; the app, live
    against it, shows the captured answer (real HTTP, the real client, real SSE)."""
    from conftest import make_settings

    from streamchat.replay_server import load_source
    from streamchat.replayapi import ReplayAPI
    from streamchat.serve import serve_in_thread

    folder = tmp_path / "imported"
    folder.mkdir()
    capture = write(tmp_path / "stream.sse", responses_body())
    assert main([str(capture), str(folder / "one.jsonl"), *PROVENANCE, "--user", "What is this?"]) == 0
    source, problems = load_source(folder)
    assert problems == []
    server = serve_in_thread(ReplayAPI(source))
    try:
        runtime = Runtime(make_settings("responses", url=server.url))
        session = runtime.new_session()
        transcript = await turn_transcript(session, "What is this?")
        await session.close()
        assert runtime.client is not None
        await runtime.client.close()
    finally:
        server.stop()
    assert transcript.text == ANSWER and transcript.status == "completed"
