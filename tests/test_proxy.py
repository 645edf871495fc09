"""The recording proxy: the `openai` SDK gets through it exactly what it gets directly
from the loopback fake server, one recording per conversation is written, and that
recording replays to the same text."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import ROOT, TEST_KEY, Fake, text_script

from streamchat.proxy import Proxy, Recorder, ServedApp, serve_app
from streamchat.recording import load_recording
from streamchat.replay_server import load_source
from streamchat.replayapi import ReplayAPI
from streamchat.serve import serve_in_thread
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript


@pytest.fixture
def proxied(fake: Fake, tmp_path: Path) -> Iterator[tuple[ServedApp, Recorder]]:
    recorder = Recorder(tmp_path / "rec")
    served = serve_app(Proxy(fake.url, recorder))  # the client's own key goes upstream
    yield served, recorder
    served.stop()


def client(url: str, key: str = TEST_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=20)


def chat_text(c: openai.OpenAI, messages: list[dict[str, Any]], **kw: Any) -> str:
    stream = c.chat.completions.create(model="test-model", messages=messages, stream=True, **kw)  # type: ignore[call-overload]
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def responses_text(c: openai.OpenAI, **kw: Any) -> tuple[str, str]:
    with c.responses.stream(model="test-model", **kw) as stream:
        final = stream.get_final_response()
    return final.output_text, final.id


def session(c: openai.OpenAI) -> list[str]:
    """A Chat conversation of two turns and a Responses chain of two turns."""
    first = chat_text(c, [{"role": "user", "content": "Hi, long answer please"}])
    second = chat_text(
        c,
        [
            {"role": "user", "content": "Hi, long answer please"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "Again, in Japanese 日本語"},
        ],
    )
    r1, rid = responses_text(c, input="Tell a story")
    r2, _ = responses_text(c, input="And then?", previous_response_id=rid)
    return [first, second, r1, r2]


def long_text(req: Any) -> FaultScript:
    return text_script(req.api, f"Answer to {req.user}: " + "lorem ipsum 😀 " * 40, size=5)


def test_sdk_gets_the_same_text_through_the_proxy_and_it_replays(
    fake: Fake, proxied: tuple[ServedApp, Recorder], tmp_path: Path
) -> None:
    fake.responder = long_text
    direct = session(client(fake.url))
    served, recorder = proxied
    through = session(client(served.url))
    assert through == direct
    assert all(text.startswith("Answer to ") for text in direct)

    served.stop()  # waits for the proxy to finish its requests, then closes the recordings
    files = sorted(recorder.paths)
    assert len(files) == 2  # one Chat conversation, one Responses chain
    recordings = {load_recording(p).api: load_recording(p) for p in files}
    assert [t.user for t in recordings["chat"].turns] == ["Hi, long answer please", "Again, in Japanese 日本語"]
    assert [t.user for t in recordings["responses"].turns] == ["Tell a story", "And then?"]
    for recording in recordings.values():
        assert recording.problems == [] and all(t.status == "completed" for t in recording.turns)
        assert recording.header["source"] == "recorded" and recording.header["model"] == "test-model"
    for path in files:
        assert TEST_KEY not in path.read_text()

    # the folder, served by the replay server's own loader, answers the same text
    source, problems = load_source(recorder.folder)
    assert problems == []
    replayer = serve_in_thread(ReplayAPI(source))
    try:
        assert session(client(replayer.url, "any-key")) == direct
    finally:
        replayer.stop()


def test_key_in_the_stream_is_redacted_in_the_file_but_forwarded_as_is(fake: Fake, proxied: tuple[ServedApp, Recorder]) -> None:
    fake.responder = lambda req: text_script(req.api, f"the key is {TEST_KEY}", size=200)
    served, recorder = proxied
    assert chat_text(client(served.url), [{"role": "user", "content": "leak it"}]) == f"the key is {TEST_KEY}"
    served.stop()
    (path,) = recorder.paths
    text = path.read_text()
    assert TEST_KEY not in text and "[redacted]" in text


def test_proxy_key_replaces_the_clients_and_stays_out_of_the_file(fake: Fake, tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    served = serve_app(Proxy(fake.url, recorder, api_key=TEST_KEY))
    try:
        assert chat_text(client(served.url, "dummy"), [{"role": "user", "content": "hello"}]) == "Echo: hello"
        with pytest.raises(openai.AuthenticationError):
            chat_text(client(fake.url, "dummy"), [{"role": "user", "content": "hello"}])  # the dummy alone is refused
    finally:
        served.stop()
    assert all(TEST_KEY not in p.read_text() for p in recorder.paths)


def test_tool_loop_is_one_turn_with_its_output(fake: Fake, proxied: tuple[ServedApp, Recorder]) -> None:
    call = synth.FunctionCall("get_time", '{"tz":"UTC"}', call_id="call_1")
    fake.push(
        FaultScript(events=synth.timed(synth.chat_stream(calls=[call], finish_reason="tool_calls"), step=0)),
        text_script("chat", "It is noon."),
    )
    served, recorder = proxied
    c = client(served.url)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What time is it?"}]
    stream = c.chat.completions.create(model="test-model", messages=messages, stream=True)  # type: ignore[arg-type]
    calls = [tc for chunk in stream if chunk.choices for tc in chunk.choices[0].delta.tool_calls or []]
    assert calls and calls[0].id == "call_1"
    messages += [
        {
            "role": "assistant",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00 UTC"},
    ]
    assert chat_text(c, messages) == "It is noon."
    served.stop()
    (path,) = recorder.paths
    recording = load_recording(path)
    (turn,) = recording.turns
    assert len(turn.streams) == 2 and turn.tool_outputs == {"call_1": "12:00 UTC"} and turn.status == "completed"


def test_assistants_thread_is_one_recording(fake: Fake, proxied: tuple[ServedApp, Recorder]) -> None:
    served, recorder = proxied
    c = client(served.url)
    thread = c.beta.threads.create()
    texts = []
    for prompt in ("First question", "Second question"):
        c.beta.threads.messages.create(thread.id, role="user", content=prompt)
        with c.beta.threads.runs.stream(thread_id=thread.id, assistant_id="asst_x") as stream:
            stream.until_done()
            texts.append(
                "".join(part.text.value for m in stream.get_final_messages() for part in m.content if part.type == "text")
            )
    assert texts == ["Echo: First question", "Echo: Second question"]
    served.stop()
    (path,) = recorder.paths
    recording = load_recording(path)
    assert recording.api == "assistants" and [t.user for t in recording.turns] == ["First question", "Second question"]


def test_first_delta_passes_before_the_stream_ends_and_stop_reaches_upstream(
    fake: Fake, proxied: tuple[ServedApp, Recorder]
) -> None:
    """The fake server goes silent for a minute after the first event: a buffering proxy
    would time the client out (read timeout 20 s) before it saw a byte."""
    script = text_script("chat", "first and then much later the rest", size=6)
    script.stall_after, script.stall = 2, 60.0
    fake.push(script)
    served, recorder = proxied
    stream = client(served.url).chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "slow"}], stream=True
    )
    first = next(chunk for chunk in stream if chunk.choices and chunk.choices[0].delta.content)
    assert first.choices[0].delta.content == "first "
    stream.close()  # Stop: the proxy closes its upstream request too
    for _ in range(500):
        if fake.core.disconnects():
            break
        __import__("time").sleep(0.01)
    assert fake.core.disconnects()
    served.stop()
    (path,) = recorder.paths
    (turn,) = load_recording(path).turns
    assert turn.status == "cancelled"


def test_upstream_errors_are_forwarded_not_recorded(fake: Fake, proxied: tuple[ServedApp, Recorder]) -> None:
    served, recorder = proxied
    with pytest.raises(openai.AuthenticationError):
        chat_text(client(served.url, "wrong-key"), [{"role": "user", "content": "hello"}])
    served.stop()
    assert recorder.paths == []


def test_cli_records_then_replays_the_folder(fake: Fake, tmp_path: Path) -> None:
    folder = tmp_path / "rec"

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamchat.replay_server", str(folder), "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in __import__("os").environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")},
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("http://"):
                return proc, line.strip()
        raise AssertionError(proc.stderr.read() if proc.stderr else "no address printed")

    proc, url = start("--record", "--upstream", fake.url)
    try:
        recorded = chat_text(client(url), [{"role": "user", "content": "through the CLI"}])
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert recorded == "Echo: through the CLI"
    (path,) = folder.iterdir()
    assert json.loads(path.read_text().splitlines()[-1]) == {
        "kind": "end",
        "turn": 0,
        "t": pytest.approx(0, abs=5),
        "status": "completed",
    }
    proc, url = start("--speed", "0")
    try:
        assert chat_text(client(url, "any"), [{"role": "user", "content": "through the CLI"}]) == recorded
    finally:
        proc.terminate()
        proc.wait(timeout=20)
