"""The recording writer and format: exclusive create, a flushed line per event, a
playable file after a stop or a crash, the header's fields, and nothing secret on disk."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Fake, make_settings, replay_settings, run_turn, text_script, turn_transcript

from streamchat import __version__, recording
from streamchat.recording import (
    FORMAT,
    MAX_FILE_BYTES,
    MAX_FOLDER_BYTES,
    MAX_TURN_BYTES,
    VERSION,
    RecordingError,
    RecordingWriter,
    header,
    load_recording,
    parse_recording,
)
from streamchat.replay import MAX_GAP
from streamchat.replayapi import Script, TurnRequest
from streamchat.session import Runtime
from streamchat.sse import RawEvent

APIS = ["responses", "assistants", "chat"]
DOC = ROOT / "docs" / "recording-format.md"


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


# -- the writer ------------------------------------------------------------------------


def test_writer_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    first = RecordingWriter(path, header("chat", "m", "x"))
    first.begin_turn("one")
    second = RecordingWriter(path, header("chat", "m", "y"))
    second.begin_turn("two")  # fails to open: that session goes on unrecorded
    second.event(RawEvent(None, {"x": 1}))
    second.end_turn("completed")
    assert "exists" in second.stopped
    first.close()
    assert [o["kind"] for o in read_lines(path)] == ["header", "turn"]
    assert read_lines(path)[1]["user"] == "one"


def test_writer_flushes_each_line_and_records_offsets(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("responses", "m", "x"), clock=clock)
    writer.begin_turn("hi")
    writer.stream_started()
    clock.now += 0.25
    writer.event(RawEvent("response.created", {"type": "response.created"}))
    # On disk at once, the file still open.
    assert read_lines(path)[-1] == {
        "kind": "event",
        "turn": 0,
        "stream": 0,
        "t": 0.25,
        "event": "response.created",
        "data": {"type": "response.created"},
    }
    writer.stream_started()
    clock.now += 1.0
    writer.event(RawEvent(None, "[DONE]"))
    writer.tool_output("call_1", "42")
    writer.end_turn("completed")
    lines = read_lines(path)
    assert lines[-3] == {"kind": "event", "turn": 0, "stream": 1, "t": 1.25, "data": "[DONE]"}  # no event name: none written
    assert lines[-2] == {"kind": "tool_output", "turn": 0, "t": 1.25, "call_id": "call_1", "output": "42"}
    assert lines[-1] == {"kind": "end", "turn": 0, "t": 1.25, "status": "completed"}
    writer.begin_turn("again")
    assert read_lines(path)[-1] == {"kind": "turn", "turn": 1, "user": "again", "at": 1.25}
    writer.close()


def test_a_crash_mid_turn_leaves_a_file_whose_last_turn_is_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("chat", "m", "x"))
    writer.begin_turn("first")
    writer.end_turn("completed")
    writer.begin_turn("second")
    writer.stream_started()
    writer.event(RawEvent(None, {"choices": [{"index": 0, "delta": {"content": "Hal"}}]}))
    # No end_turn, no close: the process died here.
    parsed = load_recording(path)
    assert [t.status for t in parsed.turns] == ["completed", "interrupted"]
    assert parsed.problems == []


def test_a_turn_over_the_size_cap_stops_recording_but_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("chat", "m", "x"), max_turn_bytes=600)
    writer.begin_turn("q")
    writer.stream_started()
    for _ in range(20):
        writer.event(RawEvent(None, {"choices": [{"index": 0, "delta": {"content": "x" * 40}}]}))
    assert "recording limit" in writer.stopped
    writer.end_turn("completed")
    writer.begin_turn("next")  # the rest of the session is not recorded
    assert path.stat().st_size <= 600 + 200
    parsed = load_recording(path)
    assert [t.status for t in parsed.turns] == ["interrupted"]  # cut short, never shown as complete
    assert MAX_TURN_BYTES < MAX_FILE_BYTES < MAX_FOLDER_BYTES


async def test_header_fields_of_a_live_recording(fake: Fake, tmp_path: Path) -> None:
    runtime = Runtime(make_settings("chat", url=fake.url, record_dir=tmp_path))
    await run_turn(runtime.new_session(), "hi")
    [path] = tmp_path.glob("*.jsonl")
    head = read_lines(path)[0]
    assert head["kind"] == "header"
    assert head["format"] == FORMAT and head["version"] == VERSION
    assert head["api"] == "chat" and head["model"] == "test-model"
    assert head["config_sha256"] == runtime.config.sha256 and re.fullmatch(r"[0-9a-f]{64}", head["config_sha256"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", head["created"])
    assert head["app_version"] == __version__
    assert head["source"] == "recorded"


async def test_live_turns_are_on_disk_while_the_turn_streams(fake: Fake, tmp_path: Path) -> None:
    fake.push(text_script("responses", "one two three four five six", size=4))
    runtime = Runtime(make_settings("responses", url=fake.url, record_dir=tmp_path))
    session = runtime.new_session()
    turn = session.turn("hi", [])
    first = await anext(turn)
    assert first  # some text is on screen...
    [path] = tmp_path.glob("*.jsonl")
    lines = read_lines(path)  # ...and the events that made it are already in the file
    kinds = [o["kind"] for o in lines]
    assert kinds[:2] == ["header", "turn"] and "event" in kinds and "end" not in kinds
    shown = "".join(o["data"]["delta"] for o in lines if o.get("event") == "response.output_text.delta")
    assert shown.startswith(first)
    async for _ in turn:
        pass
    assert read_lines(path)[-1]["kind"] == "end"
    await session.close()


@pytest.mark.parametrize("api", APIS)
async def test_a_turn_stopped_mid_stream_leaves_a_playable_file(api: str, fake: Fake, tmp_path: Path) -> None:
    script = text_script(api, "a fairly long answer that will not finish", size=3)
    # Go silent after the third delta: the stream is still open when the user stops.
    script.stall_after = next(i for i, (_, raw) in enumerate(script.events) if '"ly "' in json.dumps(raw.data)) + 1
    script.stall = 1.0
    fake.push(script)
    runtime = Runtime(make_settings(api, url=fake.url, record_dir=tmp_path))
    session = runtime.new_session()
    turn = session.turn("Tell me a story", [])
    async for value in turn:
        if value:
            break
    await turn.aclose()  # the Stop button, or a closed tab
    assert session.last_status == "cancelled"
    await session.close()

    [path] = tmp_path.glob("*.jsonl")
    parsed = load_recording(path)
    assert parsed.problems == []
    assert parsed.turns[-1].status == "cancelled"
    replayed = await turn_transcript(Runtime(replay_settings(path)).new_session(), "Tell me a story")
    assert replayed.status == "interrupted"  # what was recorded, shown as unfinished
    full = "a fairly long answer that will not finish"
    assert replayed.text and full.startswith(replayed.text) and len(replayed.text) < len(full)


# -- nothing secret on disk ---------------------------------------------------------------

CANARY = "sk-canary-7f3a9c1e5b2d4f6a8c0e"
SIGNED = [
    "https://acct.blob.core.windows.net/files/report.pdf?sv=2024-01-01&se=2026-12-01T00%3A00%3A00Z&sp=r&sig=SASSIGCANARY%3D",
    "https://bucket.s3.amazonaws.com/img.png?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIACANARY&X-Amz-Signature=AMZSIGCANARY",
    "https://d111.cloudfront.net/v.mp4?Expires=1795000000&Signature=CFSIGCANARY&Key-Pair-Id=KPCANARY",
    "https://files.example.com/dl?token=TOKENCANARY",
]
SIGNED_SECRETS = ["SASSIGCANARY", "AKIACANARY", "AMZSIGCANARY", "CFSIGCANARY", "KPCANARY", "TOKENCANARY"]


def canary_script(api: str) -> Script:
    text = f"Your key is {CANARY}. Files: {' '.join(SIGNED)} and https://example.com/page?q=kept"
    base = text_script(api, text, size=len(text))
    # An unknown event whose data holds the key and signed URLs, anywhere in it.
    unknown = RawEvent(None if api == "chat" else "canary.unknown", {"auth": CANARY, "urls": SIGNED, CANARY: [CANARY]})
    return Script(
        events=[(0.0, unknown), *base.events],
        headers={"openai-organization": "org-CANARYORG", "openai-project": "proj_CANARYPROJ", "x-request-id": "req_CANARYREQ"},
    )


@pytest.mark.parametrize("api", APIS)
async def test_the_api_key_headers_and_signed_urls_are_never_written(api: str, fake: Fake, tmp_path: Path) -> None:
    fake.core.api_key = CANARY
    seen: list[TurnRequest] = []

    def responder(req: TurnRequest) -> Script:
        seen.append(req)
        return canary_script(req.api)

    fake.responder = responder
    runtime = Runtime(make_settings(api, url=fake.url, api_key=CANARY, record_dir=tmp_path))
    session = runtime.new_session()
    values = await run_turn(session, f"My key is {CANARY}, keep it safe")
    await session.close()
    assert seen and session.last_status == "completed"  # the canary key was accepted: the turn ran
    # The key was in the stream; the UI shows the answer without it (issue 17, case 2).
    assert CANARY not in str(values[-1]) and "Your key is [redacted]." in str(values[-1])

    files = list(tmp_path.rglob("*"))
    assert files
    on_disk = "".join(p.read_text(encoding="utf-8") for p in files if p.is_file())
    assert CANARY not in on_disk
    assert "canary" not in on_disk.lower().replace("canary.unknown", "")
    for secret in SIGNED_SECRETS:
        assert secret not in on_disk
    for header_part in ("Bearer", "authorization", "org-", "proj_", "req_", "text/event-stream"):
        assert header_part not in on_disk
    # What is not secret stays: the paths of the signed URLs, an ordinary query string.
    assert "https://acct.blob.core.windows.net/files/report.pdf" in on_disk
    assert "https://example.com/page?q=kept" in on_disk
    assert "[redacted]" in on_disk


def test_scrubbing_walks_only_lines_that_need_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    walked: list[Any] = []
    real = recording._scrub

    def counting(value: Any, secret: str | None) -> Any:
        if isinstance(value, dict) and "kind" in value:  # a whole line, not a recursive call
            walked.append(value)
        return real(value, secret)

    monkeypatch.setattr(recording, "_scrub", counting)
    writer = RecordingWriter(tmp_path / "a.jsonl", header("chat", "m", "x"), secret="sk-abcdef123456")
    writer.begin_turn("plain")
    writer.stream_started()
    writer.event(RawEvent(None, {"choices": [{"delta": {"content": "see https://example.com/?q=1 and more. "}}]}))
    assert walked == []
    writer.event(RawEvent(None, {"choices": [{"delta": {"content": "https://x.example/a?sig=1"}}]}))
    writer.event(RawEvent(None, {"k": "sk-abcdef123456"}))
    assert len(walked) == 2
    writer.close()
    text = (tmp_path / "a.jsonl").read_text()
    assert 'https://x.example/a"' in text and "sig=" not in text
    assert "sk-abcdef123456" not in text and '"k":"[redacted]"' in text


# -- reading --------------------------------------------------------------------------------


def test_reader_messages_name_the_problem() -> None:
    with pytest.raises(RecordingError, match="empty"):
        parse_recording("", name="x")
    with pytest.raises(RecordingError, match="x: format version 2 is not supported"):
        parse_recording(json.dumps({"kind": "header", "format": FORMAT, "version": 2, "api": "chat"}), name="x")
    with pytest.raises(RecordingError, match="unknown api 'grpc'"):
        parse_recording(json.dumps({"kind": "header", "format": FORMAT, "version": 1, "api": "grpc"}), name="x")
    head = json.dumps({"kind": "header", "format": FORMAT, "version": 1, "api": "chat"})
    body = [
        head,
        '{"kind":"turn","turn":0,"user":"q"}',
        "[1,2]",
        '{"kind":"event","turn":3,"t":0,"data":{}}',
        '{"kind":"event","turn":0,"t":-1,"data":{}}',
        '{"kind":"event","turn":0,"stream":5,"t":0,"data":{}}',
        '{"kind":"end","turn":0,"t":0,"status":"exploded"}',
    ]
    parsed = parse_recording("\n".join(body), name="x")
    assert parsed.problems == [
        "line 3: not an object, skipped",
        "line 4: event for unknown turn 3, skipped",
        "line 5: bad time offset, skipped",
        "line 6: bad stream number, skipped",
        "line 7: unknown end status 'exploded'",
    ]
    assert parsed.turns[0].status == "interrupted"


# -- the documented format ------------------------------------------------------------------


def doc_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```jsonl\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, "docs/recording-format.md holds one ```jsonl example"
    return blocks[0]


async def test_the_documented_example_parses_and_replays(tmp_path: Path) -> None:
    example = doc_example()
    parsed = parse_recording(example, name="example")
    assert parsed.problems == []
    assert parsed.header["format"] == FORMAT and parsed.header["version"] == VERSION
    kinds = {json.loads(line)["kind"] for line in example.splitlines() if line.strip()}
    assert kinds == {"header", "turn", "event", "tool_output", "end"}
    turn = parsed.turns[0]
    assert len(turn.streams) == 2 and turn.tool_outputs and turn.status == "completed"

    path = tmp_path / "example.jsonl"
    path.write_text(example, encoding="utf-8")
    transcript = await turn_transcript(Runtime(replay_settings(path)).new_session(), turn.user)
    assert transcript.status == "completed"
    assert transcript.text


def test_the_doc_states_the_real_limits() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"`MAX_GAP` = {MAX_GAP:g} s" in text
    assert f"{MAX_TURN_BYTES // 2**20} MiB" in text
    assert f"{MAX_FILE_BYTES // 2**20} MiB" in text
    assert f"{MAX_FOLDER_BYTES // 2**20} MiB" in text
    assert f'"format":"{FORMAT}","version":{VERSION}' in text
