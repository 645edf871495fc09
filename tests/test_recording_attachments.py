"""Recording a multimodal chat: the user's files on the turn line (their bytes only with
``--record-attachments``, within the caps), the files tools produce (``file`` lines), the
provider requests as sent (``request`` lines, no file's bytes), and the tolerant reader."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from conftest import ROOT, Fake, make_settings, run_turn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamchat.attachments import Attachment, Limits, classify, inline_text
from streamchat.backends.base import REQUEST_TAP
from streamchat.options import build_parser, settings_from
from streamchat.recording import FORMAT, FolderQuota, RecordingWriter, header, load_recording, parse_recording
from streamchat.session import Runtime, make_client
from streamchat.sse import RawEvent

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
"""An image by its signature (``attachments.classify`` sniffs it as PNG)."""


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def image(data: bytes = PNG, name: str = "cat.png") -> Attachment:
    return classify(data, name, Limits())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- turn lines: attachments ---------------------------------------------------------------


def test_a_turn_line_keeps_each_files_metadata_and_no_bytes_by_default(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("responses", "m", "x"))
    cat = image()
    writer.begin_turn("What is this?", position=0, attachments=[cat])
    writer.end_turn("completed")
    writer.close()
    turn_line = read_lines(path)[1]
    assert turn_line["attachments"] == [
        {"name": "cat.png", "type": "image/png", "size": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest()}
    ]
    assert b64(PNG)[:40] not in path.read_text()
    [turn] = load_recording(path).turns
    [read] = turn.attachments
    assert (read.name, read.mime, read.size, read.sha256, read.data) == ("cat.png", "image/png", len(PNG), cat.sha256, None)


def test_record_attachments_keeps_the_bytes_and_reads_them_back(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("responses", "m", "x"), record_attachments=True)
    notes = classify(b"# Notes\n\nplain text\n", "notes.md", Limits())
    writer.begin_turn("Compare", attachments=[image(), notes])
    writer.end_turn("completed")
    writer.close()
    assert [a["data"] for a in read_lines(path)[1]["attachments"]] == [b64(PNG), b64(b"# Notes\n\nplain text\n")]
    [turn] = load_recording(path).turns
    assert [(a.name, a.data) for a in turn.attachments] == [("cat.png", PNG), ("notes.md", b"# Notes\n\nplain text\n")]
    assert writer.take_notice() is None


def test_bytes_over_a_cap_are_left_out_and_said_once(tmp_path: Path) -> None:
    """Over the caps (each within BYTES_SHARE of the room left), a file is recorded by its
    metadata alone; the chat is told once per session; recording goes on."""
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("chat", "m", "x"), record_attachments=True, max_turn_bytes=2400)
    small = image(PNG[:300], "small.png")
    # Half the room, 1.2 kB: the image's 1.4 kB of base64 does not fit, the small one's 0.4 kB does.
    writer.begin_turn("one", attachments=[image(), small])
    writer.end_turn("completed")
    notice = writer.take_notice()
    assert notice is not None and "cat.png" in notice and "without its bytes" in notice
    assert writer.take_notice() is None
    writer.begin_turn("two", attachments=[image(PNG + b"!" * 2000, "big.png")])
    writer.end_turn("completed")
    assert writer.take_notice() is None  # said once per session, not per file
    assert writer.stopped == ""
    writer.close()
    turns = load_recording(path).turns
    assert [[a.data is not None for a in t.attachments] for t in turns] == [[False, True], [False]]
    assert [a.name for a in turns[0].attachments] == ["cat.png", "small.png"]  # the order as attached
    assert turns[1].attachments[0].sha256 == hashlib.sha256(PNG + b"!" * 2000).hexdigest()


def test_the_folder_cap_counts_the_bytes_too(tmp_path: Path) -> None:
    quota = FolderQuota(2000)  # half the room left is less than the image's 1.4 kB of base64
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("chat", "m", "x"), record_attachments=True, quota=quota)
    writer.begin_turn("q", attachments=[image()])
    writer.close()
    assert "data" not in read_lines(path)[1]["attachments"][0]
    assert writer.take_notice() is not None and quota.used <= 2000


async def test_a_live_turn_records_its_attachments_bytes_with_the_flag(fake: Fake, tmp_path: Path) -> None:
    runtime = Runtime(make_settings("responses", url=fake.url, record_dir=tmp_path, record_attachments=True))
    session = runtime.new_session()
    values = [v async for v in session.turn("What is this?", [], attachments=[image()])]
    assert values
    await session.close()
    [path] = tmp_path.glob("*.jsonl")
    [turn] = load_recording(path).turns
    assert [(a.name, a.data) for a in turn.attachments] == [("cat.png", PNG)]


def test_the_flag_and_its_variable() -> None:
    text = build_parser().format_help()
    assert "--record-attachments" in text and "STREAMCHAT_RECORD_ATTACHMENTS" in text
    env = {"OPENAI_API_KEY": "sk-test-0000000000000000000000"}
    assert settings_from(["--record"], env)[0].record_attachments is False
    assert settings_from(["--record", "--record-attachments"], env)[0].record_attachments is True
    assert settings_from(["--record"], {**env, "STREAMCHAT_RECORD_ATTACHMENTS": "1"})[0].record_attachments is True


# -- file lines: files tools produce --------------------------------------------------------


def test_file_lines_are_read_into_their_turn(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("assistants", "m", "x"))
    writer.begin_turn("Plot it")
    writer.output_file("file-plot1", "plot.png", PNG)
    writer.output_file("file-csv1", "data.csv", b"a,b\n1,2\n")
    writer.end_turn("completed")
    writer.close()
    [turn] = load_recording(path).turns
    assert {k: (f.name, f.data, f.sha256) for k, f in turn.files.items()} == {
        "file-plot1": ("plot.png", PNG, hashlib.sha256(PNG).hexdigest()),
        "file-csv1": ("data.csv", b"a,b\n1,2\n", hashlib.sha256(b"a,b\n1,2\n").hexdigest()),
    }


def test_a_tool_file_over_the_caps_is_kept_by_name_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("assistants", "m", "x"), max_turn_bytes=2000)
    writer.begin_turn("Plot it")
    writer.output_file("file-plot1", "plot.png", PNG)
    writer.end_turn("completed")
    writer.close()
    assert writer.stopped == "" and "plot.png" in (writer.take_notice() or "")
    [turn] = load_recording(path).turns
    found = turn.files["file-plot1"]
    assert found.data is None and found.sha256 == hashlib.sha256(PNG).hexdigest() and turn.status == "completed"


# -- the tolerant reader ----------------------------------------------------------------------


def test_bad_files_are_named_and_skipped() -> None:
    sha = hashlib.sha256(PNG).hexdigest()
    head = json.dumps({"kind": "header", "format": FORMAT, "version": 1, "api": "responses"})
    good = {"name": "ok.png", "type": "image/png", "size": len(PNG), "sha256": sha, "data": b64(PNG)}
    lines = [
        head,
        json.dumps(
            {
                "kind": "turn",
                "turn": 0,
                "user": "q",
                "attachments": [
                    good,
                    {"type": "image/png"},
                    {"name": "wrong.png", "sha256": "0" * 64, "data": b64(PNG)},
                    {"name": "junk.png", "data": "not base64!"},
                    {"name": "odd.png", "sha256": "xyz"},
                ],
            }
        ),
        json.dumps({"kind": "turn", "turn": 1, "user": "r", "attachments": "cat.png"}),
        json.dumps({"kind": "file", "turn": 0, "t": 0.1, "name": "plot.png", "data": b64(PNG)}),
        json.dumps({"kind": "file", "turn": 0, "t": 0.1, "file_id": "file-1", "name": "p.png", "size": 3, "data": b64(PNG)}),
        json.dumps({"kind": "file", "turn": 0, "t": -1, "file_id": "file-2", "name": "p.png"}),
        json.dumps({"kind": "request", "turn": 0, "t": 0.1, "body": {}}),
        json.dumps({"kind": "request", "turn": 7, "t": 0.1, "method": "POST", "path": "/v1/files"}),
        json.dumps({"kind": "request", "turn": 0, "t": 0.2, "method": "GET", "path": "/v1/x", "body": None}),
    ]
    parsed = parse_recording("\n".join(lines), name="x")
    assert parsed.problems == [
        "line 2: attachment 1 without a name, skipped",
        "line 2: attachment 2 “wrong.png”: data does not match its sha256, dropped",
        "line 2: attachment 3 “junk.png”: data is not base64, dropped",
        "line 2: attachment 4 “odd.png”: sha256 is not a SHA-256 hex digest, ignored",
        "line 3: attachments is not a list, ignored",
        "line 4: file without a file_id, skipped",
        "line 5: file “p.png”: data does not match its size, dropped",
        "line 6: bad time offset, skipped",
        "line 7: request without method or path, skipped",
        "line 8: request for unknown turn 7, skipped",
    ]
    first, second = parsed.turns
    assert [(a.name, a.sha256, a.data is not None) for a in first.attachments] == [
        ("ok.png", sha, True),
        ("wrong.png", "0" * 64, False),  # still a file of the turn: matched by its hash
        ("junk.png", None, False),
        ("odd.png", None, False),
    ]
    assert second.attachments == []
    assert list(first.files) == ["file-1"] and first.files["file-1"].data is None
    assert [(r.method, r.path, r.body) for r in first.requests] == [("GET", "/v1/x", None)]


# -- round trips --------------------------------------------------------------------------------

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
files = st.lists(st.tuples(names, st.binary(min_size=1, max_size=300)), max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    turns=st.lists(st.tuples(names, files, st.booleans()), min_size=1, max_size=3),
    outputs=st.lists(
        st.tuples(st.from_regex(r"file-[a-z0-9]{1,12}", fullmatch=True), names, st.binary(max_size=200)), max_size=3
    ),
    keep=st.booleans(),
)
def test_attachments_and_tool_files_round_trip(
    tmp_path: Path, turns: list[tuple[str, list[tuple[str, bytes]], bool]], outputs: list[tuple[str, str, bytes]], keep: bool
) -> None:
    """Whatever the names and bytes, the reader gives back what the writer was given:
    each attachment's name, type, size and hash in order (bytes when kept), each tool
    file by id."""
    path = tmp_path / f"rt-{hashlib.sha256(repr((turns, outputs, keep)).encode()).hexdigest()[:16]}.jsonl"
    writer = RecordingWriter(path, header("responses", "m", "x"), record_attachments=keep)
    given_turns = []
    for user, attached, _ in turns:
        made = [
            Attachment(name, "application/octet-stream", len(data), hashlib.sha256(data).hexdigest(), "document", data=data)
            for name, data in attached
        ]
        writer.begin_turn(user, attachments=made)
        for file_id, name, data in outputs:
            writer.output_file(file_id, name, data)
        writer.end_turn("completed")
        given_turns.append(made)
    writer.close()
    parsed = load_recording(path)
    assert parsed.problems == []
    for turn, made in zip(parsed.turns, given_turns, strict=True):
        assert [(a.name, a.mime, a.size, a.sha256) for a in turn.attachments] == [
            (m.name, m.mime, m.size, m.sha256) for m in made
        ]
        assert [a.data for a in turn.attachments] == [m.data if keep else None for m in made]
        expected = {file_id: (name, data) for file_id, name, data in outputs}
        assert {k: (f.name, f.data) for k, f in turn.files.items()} == expected


# -- request lines --------------------------------------------------------------------------------


async def test_requests_are_recorded_as_sent_without_any_files_bytes(fake: Fake, tmp_path: Path) -> None:
    """Through the app's HTTP client (RetryingClient) to the fake server over real HTTP:
    a streaming request with an image as a data URL, a document inlined as text, and an
    upload. Each becomes a request line; the file's bytes are never in the file."""
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("responses", "m", "x"), secret="sk-test-0000000000000000000000")
    writer.begin_turn("What is this?")
    client = make_client(make_settings("responses", url=fake.url))
    cat = image()
    doc = classify(b"secret plans, line one\n", "plans.txt", Limits())
    token = REQUEST_TAP.set(writer.http_request)
    try:
        content = [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": cat.data_url()},
            {"type": "input_text", "text": inline_text(doc)},
        ]
        async with client.responses.with_streaming_response.create(
            model="m", stream=True, input=[{"role": "user", "content": content}]
        ) as response:
            assert response.http_response.status_code == 200
        uploaded = await client.files.create(file=("cat.png", PNG, "image/png"), purpose="vision")
        assert fake.core.files.sha256(uploaded.id) == cat.sha256  # the server got the bytes
    finally:
        REQUEST_TAP.reset(token)
        await client.close()
    writer.end_turn("completed")
    writer.close()

    text = path.read_text(encoding="utf-8")
    for chunk in (b64(PNG)[i : i + 24] for i in range(0, len(b64(PNG)) - 24, 97)):
        assert chunk not in text  # not a piece of the image's base64
    assert "secret plans" not in text and "sk-test-0000" not in text
    [turn] = load_recording(path).turns
    sent, upload = turn.requests
    assert (sent.method, sent.path) == ("POST", "/v1/responses")
    parts = sent.body["input"][0]["content"]
    assert parts[0] == {"type": "input_text", "text": "What is this?"}
    assert parts[1]["image_url"] == f"data:image/png;sha256={cat.sha256};size={len(PNG)}"
    assert parts[2]["text"] == f'<file name="plans.txt" type="text/plain" sha256="{doc.sha256}" size="{doc.size}"/>'
    assert (upload.method, upload.path) == ("POST", "/v1/files")
    assert upload.body == {
        "multipart": {
            "purpose": "vision",
            "file": {"filename": "cat.png", "type": "image/png", "size": len(PNG), "sha256": cat.sha256},
        }
    }
    assert 0 <= sent.t <= upload.t


async def test_a_live_turns_requests_are_recorded_in_its_turn(fake: Fake, tmp_path: Path) -> None:
    """A session sets the request tap around its turn: the Responses driver's requests
    (the conversation, then the streaming response) are in the turn, in order."""
    runtime = Runtime(make_settings("responses", url=fake.url, record_dir=tmp_path))
    session = runtime.new_session()
    await run_turn(session, "hello")
    await run_turn(session, "again", [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Echo: hello"}])
    await session.close()
    [path] = tmp_path.glob("*.jsonl")
    first, second = load_recording(path).turns
    recorded = [(r.method, r.path.removeprefix("/v1")) for r in first.requests + second.requests]
    received = [(r.method, r.path) for r in fake.core.requests() if r.method != "DELETE"]  # the tab's close: after the turns
    assert recorded == received and recorded[-1] == ("POST", "/responses")
    assert first.requests[-1].body["stream"] is True
    assert "hello" in json.dumps(first.requests[-1].body) and "again" in json.dumps(second.requests[-1].body)
    lines = read_lines(path)
    kinds = [o["kind"] for o in lines]
    assert kinds.index("request") < kinds.index("event")  # as it happened: the request, then its stream


def test_a_request_body_over_the_caps_is_kept_as_its_size_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("chat", "m", "x"), max_turn_bytes=3000)
    writer.begin_turn("q")
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 4000}]}).encode()
    writer.http_request("POST", "/v1/chat/completions", "application/json", body)
    writer.event(RawEvent(None, {"choices": [{"index": 0, "delta": {"content": "ok"}}]}))
    writer.end_turn("completed")
    writer.close()
    assert writer.stopped == ""
    [turn] = load_recording(path).turns
    [request] = turn.requests
    assert request.body == {"omitted": "size", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert turn.status == "completed"


# -- the documented lines --------------------------------------------------------------------


def test_the_documented_turn_file_and_request_lines_read_as_documented() -> None:
    text = (ROOT / "docs" / "recording-format.md").read_text(encoding="utf-8")
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, flags=re.DOTALL)]
    by_kind = {e["kind"]: e for e in examples if e.get("kind") in ("turn", "file", "request")}
    assert set(by_kind) == {"turn", "file", "request"}
    head = {"kind": "header", "format": FORMAT, "version": 1, "api": "responses"}
    lines = [head, by_kind["turn"], by_kind["request"], by_kind["file"]]
    parsed = parse_recording("\n".join(json.dumps(line) for line in lines), name="doc")
    assert parsed.problems == []
    [turn] = parsed.turns
    assert [(a.name, a.mime, a.size) for a in turn.attachments] == [("cat.png", "image/png", 48213)]
    assert turn.files[by_kind["file"]["file_id"]].data == base64.b64decode(by_kind["file"]["data"])
    assert turn.requests[0].body["multipart"]["file"]["sha256"] == turn.attachments[0].sha256
    for name in ("BYTES_SHARE", "--record-attachments", "STREAMCHAT_RECORD_ATTACHMENTS"):
        assert name in text
