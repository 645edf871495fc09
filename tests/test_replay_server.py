"""``python -m streamchat.replay_server``: the bundled recordings served over real HTTP
on 127.0.0.1, streamed with the real `openai` client on every API route."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from conftest import ROOT

from streamchat.recording import RecordedTurn, Recording, load_recording
from streamchat.replay import Player
from streamchat.replay_server import UnionSource, build_parser, load_source, main, make_core, serve
from streamchat.replayapi import TurnRequest
from streamchat.testing import synth
from streamchat.validate import MAX_BODY

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


def asked(turn: RecordedTurn) -> Any:
    """A recorded turn's message as a client sends it: its text, and the files it was
    asked with (kept in the recording) as Responses input parts; replay matches them by hash."""
    if not turn.attachments:
        return turn.user
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": turn.user}]
    for file in turn.attachments:
        assert file.data is not None, "the bundled recordings keep their files"
        url = f"data:{file.mime};base64,{base64.b64encode(file.data).decode()}"
        if (file.mime or "").startswith("image/"):
            parts.append({"type": "input_image", "image_url": url})
        else:
            parts.append({"type": "input_file", "filename": file.name, "file_data": url})
    return [{"role": "user", "content": parts}]


async def test_responses_route_streams_each_turn_in_a_conversation(server_url: str) -> None:
    api = client(server_url)
    for recording in bundled("responses"):
        conversation = await api.conversations.create()
        for turn in recording.turns:
            text, types = "", []
            request: Any = {"input": asked(turn)}
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


# -- hostile request bodies (issue 17, case 6) -------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Any]]:
    """The replay server as ``main`` builds it (validation, redaction, no request log),
    in-process on a free port, over the bundled recordings."""
    source, _ = load_source(BUNDLED)
    core = make_core(source, 0.0)
    running = serve(core, max_body=MAX_BODY)
    try:
        yield running.url, core
    finally:
        running.stop()


def post(url: str, path: str, body: Any = None, content: bytes | None = None) -> httpx2.Response:
    if content is None:
        content = json.dumps(body).encode()
    return httpx2.post(url + path, content=content, headers={"content-type": "application/json"}, timeout=30)


BAD_BODIES: list[tuple[str, Any, str]] = [
    # (route, body, the field the error names)
    (
        "/responses",
        {"stream": True, "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
        "input[0].content[0].text",
    ),
    ("/responses", {"stream": True, "input": "hi", "conversation": ["x"]}, "conversation"),
    ("/responses", {"stream": True, "input": "hi", "previous_response_id": {}}, "previous_response_id"),
    ("/responses", {"stream": True, "input": 7}, "input"),
    ("/responses", {"stream": "yes", "input": "hi"}, "stream"),
    ("/responses", {"stream": True, "input": [{"role": "user", "content": {"text": "x"}}]}, "input[0].content"),
    ("/chat/completions", {"stream": True, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("/chat/completions", {"stream": True, "messages": {"role": "user"}}, "messages"),
    ("/chat/completions", {"stream": True, "messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
    ("/assistants", {"model": "m", "temperature": "hot"}, "temperature"),
    ("/threads/thread_x/messages", {"role": "user", "content": [{"type": "text", "text": ["x"]}]}, "content[0].text"),
    ("/threads/thread_x/runs/run_1/submit_tool_outputs", {"tool_outputs": [{"tool_call_id": 1}]}, "tool_outputs[0].tool_call_id"),
]


@pytest.mark.parametrize(("path", "body", "param"), BAD_BODIES, ids=[p for _, _, p in BAD_BODIES])
def test_a_type_confused_body_gets_a_400_naming_the_field(served: tuple[str, Any], path: str, body: Any, param: str) -> None:
    url, _ = served
    response = post(url, path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and f"'{param}'" in error["message"], error


def test_a_body_that_is_not_an_object_or_not_json_gets_a_400(served: tuple[str, Any]) -> None:
    url, _ = served
    for content, code in ((b'["x"]', "invalid_type"), (b"{not json", "invalid_json"), (b'"text"', "invalid_type")):
        response = post(url, "/responses", content=content)
        assert response.status_code == 400 and response.json()["error"]["code"] == code, response.text


def test_deep_nesting_gets_a_400_not_a_500(served: tuple[str, Any]) -> None:
    url, _ = served
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = b'{"stream": true, "input": ' + deep + b"}"
    for content in (deep, nested, b'{"a": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001):
        response = post(url, "/responses", content=content)
        assert response.status_code == 400 and response.json()["error"]["code"] == "too_deep", response.text[:200]
    # Brackets inside strings are text, not nesting.
    response = post(url, "/responses", {"stream": True, "input": "[" * 5000})
    assert response.status_code == 404 and "No recording answers" in response.json()["error"]["message"]


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_an_oversized_body_is_refused_before_it_is_read(served: tuple[str, Any]) -> None:
    """Announced by Content-Length (8× the limit): 413 after 64 KiB were sent. Sent
    chunked (no length): 413 once the limit is passed, long before 8× the limit."""
    url, _ = served
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = (
            f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {8 * MAX_BODY}\r\n\r\n"
        )
        sock.sendall(head.encode() + b" " * 65536)
        assert read_status(sock) == 413
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 65536
        sent = 0
        try:
            while sent < 8 * MAX_BODY:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
                sock.setblocking(False)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 2 * MAX_BODY, sent  # socket buffers hold a few MiB more
        assert read_status(sock) == 413
    # Just under the limit is served as usual (no recording answers it: 404).
    response = post(url, "/responses", {"stream": True, "input": "x" * (MAX_BODY - 100)})
    assert response.status_code == 404


def test_the_server_keeps_no_request_bodies(served: tuple[str, Any]) -> None:
    url, core = served
    big = {"stream": True, "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}], "pad": "x" * 500_000}
    for _ in range(8):
        assert post(url, "/responses", big).status_code == 400
        assert post(url, "/responses", {"stream": True, "input": "nothing recorded" + "x" * 500_000}).status_code == 404
    assert len(core.log) == 0


async def test_the_test_servers_log_is_a_ring() -> None:
    """The fake API keeps its log for tests, but only the latest requests."""
    from streamchat.replayapi import ReplayAPI, Script

    core = ReplayAPI(lambda request: Script())
    for n in range(1500):
        await core.handle("GET", "/v1/models", {"n": n}, {})
    assert core.log.maxlen is not None and len(core.log) == core.log.maxlen < 1500
    assert core.log[-1].body == {"n": 1499}


async def test_the_replay_server_redacts_keys_from_what_it_sends(served: tuple[str, Any], tmp_path: Path) -> None:
    """A recording written by another tool with a key in it, and an unmatched prompt
    holding one: neither reaches the client."""
    key = "sk-proj-" + "Lk9" * 16
    lines = [
        {"kind": "header", "format": "streamchat-recording", "version": 1, "api": "chat", "model": "m"},
        {"kind": "turn", "turn": 0, "user": "show the key"},
        *[
            {"kind": "event", "turn": 0, "stream": 0, "t": 0, "data": raw.data}
            for raw in synth.chat_stream([f"The key is {key}."])
        ],
        {"kind": "end", "turn": 0, "t": 0, "status": "completed"},
    ]
    (tmp_path / "leaky.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    source, _ = load_source(tmp_path)
    running = serve(make_core(source, 0.0))
    try:
        api = client(running.url)
        stream = await api.chat.completions.create(model="m", messages=[{"role": "user", "content": "show the key"}], stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "The key is [redacted]."
        with pytest.raises(openai.NotFoundError) as info:
            await api.chat.completions.create(model="m", messages=[{"role": "user", "content": f"my {key}"}], stream=True)
        assert key not in str(info.value.body) and "[redacted]" in str(info.value.body)
        await api.close()
    finally:
        running.stop()


def test_the_max_body_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["x"]).max_body == MAX_BODY == 32 * 2**20
    assert build_parser().parse_args(["x", "--max-body", "1000"]).max_body == 1000
    assert main([str(BUNDLED), "--max-body", "0"]) == 2
    assert "--max-body" in capsys.readouterr().err
    source, _ = load_source(BUNDLED)
    running = serve(make_core(source, 0.0), max_body=1000)
    try:
        assert post(running.url, "/responses", {"stream": True, "input": "x" * 2000}).status_code == 413
        assert post(running.url, "/responses", {"stream": True, "input": "x" * 500}).status_code == 404
    finally:
        running.stop()
