"""Any text survives a recording: what is written is what is replayed, turn for turn
(issue 17, cases 1 and 3).

Line separators (U+2028, U+2029, U+0085) are written as ``\\u`` escapes and the reader
splits on ``\\n`` only; a lone surrogate, from the user or the server, becomes U+FFFD
with one notice, and never an error or a skipped turn number.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Fake, make_settings, replay_settings, run_turn, text_script, turn_transcript
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamchat.recording import RecordingWriter, clean_text, header, load_recording, parse_recording
from streamchat.redact import redact
from streamchat.session import REPLACED, Runtime
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript

APIS = ["responses", "assistants", "chat"]
SEPARATORS = "\u2028\u2029\u0085"


def answer(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join(m["content"] for m in value if not m.get("metadata"))


def notices(value: Any) -> list[str]:
    if isinstance(value, str):
        return []
    return [m["metadata"]["title"] for m in value if m.get("metadata", {}).get("title", "").startswith("ℹ️")]


def only_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.jsonl"))
    assert len(files) == 1, files
    return files[0]


async def close(runtime: Runtime) -> None:
    await runtime.shutdown()
    if runtime.client is not None:
        await runtime.client.close()


# -- case 1: line separators -----------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_line_separators_are_escaped_and_replay_whole(api: str, fake: Fake, tmp_path: Path) -> None:
    text = "Line one\u2028line two\u2029line three\u0085line four, all one answer."
    message = "Split\u2028me\u2029please"
    fake.push(text_script(api, text, size=5))
    runtime = Runtime(make_settings(api, url=fake.url, record_dir=tmp_path))
    chat = runtime.new_session()
    live = await run_turn(chat, message)
    await chat.close()
    await close(runtime)
    assert answer(live[-1]) == text
    raw = only_file(tmp_path).read_text(encoding="utf-8")
    assert not any(c in raw for c in SEPARATORS)  # escaped, for every reader's sake
    assert "\\u2028" in raw and "\\u2029" in raw and "\\u0085" in raw
    parsed = load_recording(only_file(tmp_path))
    assert parsed.problems == [] and parsed.prompts == [message]
    replay = Runtime(replay_settings(tmp_path))
    values = await run_turn(replay.new_session(), message)
    assert values[-1] == live[-1]


def test_the_reader_splits_on_newline_only() -> None:
    """A file written raw (an older writer, another tool) still reads whole."""
    lines = [
        {"kind": "header", "format": "streamchat-recording", "version": 1, "api": "chat", "model": "m"},
        {"kind": "turn", "turn": 0, "user": "a\u2028b\x1cc\x1dd\x1ee\x85f\x0bg\x0ch\rI"},
        {"kind": "end", "turn": 0, "t": 0.1, "status": "completed"},
    ]
    text = "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in lines)
    assert "\u2028" in text and "\r" not in text  # JSON escapes \r itself
    parsed = parse_recording(text)
    assert parsed.problems == [] and parsed.prompts == [lines[1]["user"]]
    # \r\n line ends (a file edited on Windows) still read.
    assert parse_recording(text.replace("\n", "\r\n")).prompts == [lines[1]["user"]]


# -- case 3: text UTF-8 cannot carry -----------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_a_lone_surrogate_from_the_user_is_replaced_and_said_once(api: str, fake: Fake, tmp_path: Path) -> None:
    runtime = Runtime(make_settings(api, url=fake.url, record_dir=tmp_path))
    chat = runtime.new_session()
    history: list[dict[str, Any]] = []
    for message in ("first", "bad \ud800 one \udfff", "third"):
        values = await run_turn(chat, message, history)
        cleaned = clean_text(message)
        assert answer(values[-1]) == f"Echo: {cleaned}" and chat.last_status == "completed"
        said = [n for n in notices(values[-1]) if "could not be encoded" in n]
        assert len(said) == (1 if cleaned != message else 0), values[-1]
        history += [{"role": "user", "content": cleaned}, {"role": "assistant", "content": answer(values[-1])}]
    await chat.close()
    await close(runtime)
    parsed = load_recording(only_file(tmp_path))
    assert parsed.problems == []
    assert [t.index for t in parsed.turns] == [0, 1, 2]  # no turn number skipped
    assert parsed.prompts == ["first", "bad \ufffd one \ufffd", "third"]
    assert [t.status for t in parsed.turns] == ["completed"] * 3


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_a_lone_surrogate_from_the_server_is_replaced_and_replays(api: str, fake: Fake, tmp_path: Path) -> None:
    """The server's JSON holds ``\\ud800`` (valid JSON, not valid text): the answer shows
    U+FFFD with one notice, the turn completes, and the recording replays it."""
    # The whole stream as ASCII JSON, so the surrogates travel as escapes in every event
    # that carries the text (deltas and the provider's final text alike).
    base = text_script(api, "B\ud800d \udc00 Good text.", size=4)
    frames = []
    for _, raw in base.events:
        data = raw.data if isinstance(raw.data, str) else json.dumps(raw.data)
        frames.append((f"event: {raw.event}\n" if raw.event else "") + f"data: {data}\n\n")
    body = "".join(frames)
    assert "\\ud800" in body
    script = FaultScript(events=[], raw_tail=body.encode("ascii"))
    fake.push(script)
    runtime = Runtime(make_settings(api, url=fake.url, record_dir=tmp_path))
    chat = runtime.new_session()
    values = await run_turn(chat, "hello")
    assert chat.last_status == "completed", values[-1]
    shown = answer(values[-1])
    assert shown == "B\ufffdd \ufffd Good text.", values[-1]
    assert len([n for n in notices(values[-1]) if "could not be encoded" in n]) == 1
    assert REPLACED.startswith("Some characters")
    await chat.close()
    await close(runtime)
    parsed = load_recording(only_file(tmp_path))
    assert parsed.problems == [] and [t.status for t in parsed.turns] == ["completed"]
    replay = Runtime(replay_settings(tmp_path))
    again = await run_turn(replay.new_session(), "hello")
    assert answer(again[-1]) == shown


# -- the round trip, over arbitrary text ------------------------------------------------------

SPECIAL = st.sampled_from(
    [
        *SEPARATORS,
        "\x00",
        "\r",
        "\n",
        "\x1c",
        "\u202e",  # right-to-left override
        "\u05d0\u05d1",  # Hebrew
        "e\u0301",  # combining acute
        "\U0001f469\u200d\U0001f469\u200d\U0001f467",  # emoji ZWJ family
        "\ud800",  # lone surrogates
        "\udfff",
        "\ufeff",
        "\U0010ffff",
    ]
)
TEXT = st.lists(st.one_of(st.characters(exclude_categories=()), SPECIAL), min_size=1, max_size=40).map("".join)


def write_recording(path: Path, turns: list[tuple[str, list[str]]]) -> None:
    writer = RecordingWriter(path, header("chat", "m", "x"))
    for user, deltas in turns:
        writer.begin_turn(user)
        writer.stream_started()
        for raw in synth.chat_stream(deltas):
            writer.event(raw)
        writer.end_turn("completed")
    writer.close()


async def replay_answers(folder: Path, prompts: list[str]) -> list[str]:
    runtime = Runtime(replay_settings(folder))
    chat = runtime.new_session()
    history: list[dict[str, Any]] = []
    out = []
    for prompt in prompts:
        transcript = await turn_transcript(chat, prompt, history)
        assert transcript.status == "completed", transcript.value()
        out.append(answer(transcript.value()))
        history += [{"role": "user", "content": prompt}, {"role": "assistant", "content": out[-1]}]
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.tuples(TEXT, st.lists(TEXT, min_size=1, max_size=4)), min_size=1, max_size=3))
def test_what_is_written_is_what_is_replayed(
    turns: list[tuple[str, list[str]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Written with the writer, replayed by a session through the real replay path (the
    `openai` client, the SSE decoder, the adapter, the transcript): each turn's answer
    is the text written, with only U+FFFD for what UTF-8 cannot hold (and keys, if the
    generator ever makes one, redacted)."""
    turns = [(user, deltas) for user, deltas in turns if user.strip()]
    if not turns:
        return
    folder = tmp_path_factory.mktemp("roundtrip")
    write_recording(folder / "r.jsonl", turns)
    parsed = load_recording(folder / "r.jsonl")
    assert parsed.problems == [] and len(parsed.turns) == len(turns)
    assert parsed.prompts == [clean_text(user) for user, _ in turns]
    got = asyncio.run(replay_answers(folder, [user for user, _ in turns]))
    assert got == [redact(clean_text("".join(deltas))) for _, deltas in turns]
