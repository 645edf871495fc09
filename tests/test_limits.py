"""The limits of what the app accepts.

- Recording caps and failures, live: past a cap or on a write error the chat goes on,
  says that recording stopped, and what was already written stays playable. The caps
  are made small here (monkeypatched), so a test crosses them with a few kilobytes.
- Configuration: every invalid shape of the YAML, a flag or an environment variable
  stops the app at start-up with one line naming the key (the app's real exit path).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_CONFIG, BUILDERS, ROOT, TEST_KEY, Fake, make_settings, replay_settings, run_turn, text_script
from test_load import load_app

from streamchat import recording, session
from streamchat.options import settings_from
from streamchat.recording import RecordingError, RecordingWriter, load_recording
from streamchat.replay import Library
from streamchat.session import BUSY, READ_TIMEOUT, Runtime, Settings
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript

APIS = ["responses", "assistants", "chat"]
SHORT = "A short answer."
LONG = "A much longer answer that goes on. " * 40  # ~1.4 kB of text, ~350 delta events


def notices(value: Any) -> list[str]:
    if isinstance(value, str):
        return []
    return [m["metadata"]["title"] for m in value if m.get("metadata", {}).get("title", "").startswith("ℹ️")]


def answer(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join(m["content"] for m in value if not m.get("metadata"))


def only_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.jsonl"))
    assert len(files) == 1, files
    return files[0]


async def close(runtime: Runtime) -> None:
    await runtime.shutdown()
    if runtime.client is not None:
        await runtime.client.close()


@pytest.mark.parametrize("api", APIS)
async def test_turn_cap_stops_recording_with_a_notice_and_keeps_what_was_written(
    api: str, fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 12000  # over a short turn (~7 kB in Assistants, whose run objects are large), far under a long one
    monkeypatch.setattr(session, "RecordingWriter", functools.partial(RecordingWriter, max_turn_bytes=cap))
    fake.push(text_script(api, SHORT), text_script(api, LONG, size=4), text_script(api, SHORT))
    runtime = Runtime(make_settings(api, url=fake.url, record_dir=tmp_path))
    chat = runtime.new_session()

    first = await run_turn(chat, "short one")
    assert first[-1] == SHORT  # under the cap: no notice
    path = only_file(tmp_path)
    before = path.read_bytes()

    second = await run_turn(chat, "long one")
    # The chat is untouched: the whole answer, completed, plus one line saying why
    # the recording stopped.
    assert answer(second[-1]) == LONG and chat.last_status == "completed"
    assert [n for n in notices(second[-1]) if "recording limit" in n], second[-1]
    after = path.read_bytes()
    assert after.startswith(before)  # nothing already written was lost or rewritten
    assert len(after) - len(before) <= cap
    parsed = load_recording(path)
    assert parsed.problems == []
    assert [t.status for t in parsed.turns] == ["completed", "interrupted"]  # cut short, and says so
    assert parsed.turns[1].user == "long one" and parsed.turns[1].streams

    third = await run_turn(chat, "short again")
    assert answer(third[-1]) == SHORT
    assert notices(third[-1]), "a turn that is not recorded says so"
    assert path.read_bytes() == after  # a stopped recording never writes again
    await close(runtime)


async def test_folder_cap_refuses_new_recordings_with_a_notice(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "MAX_FOLDER_BYTES", 4000)
    (tmp_path / "old.jsonl").write_bytes(b"x" * 5000)
    runtime = Runtime(make_settings("chat", url=fake.url, record_dir=tmp_path))
    chat = runtime.new_session()
    values = await run_turn(chat, "hello")
    assert answer(values[-1]) == "Echo: hello" and chat.last_status == "completed"
    assert any("not recorded" in n for n in notices(values[-1])), values[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.jsonl"]  # no new file, not even empty

    # Room again (the old file removed): a new chat records.
    (tmp_path / "old.jsonl").unlink()
    await chat.reset()
    values = await run_turn(chat, "hello again")
    assert values[-1] == "Echo: hello again"
    await chat.close()
    assert [t.user for t in load_recording(only_file(tmp_path)).turns] == ["hello again"]
    await close(runtime)


async def test_a_record_folder_that_cannot_be_written_is_a_notice_not_a_crash(fake: Fake, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "taken"
    not_a_folder.write_text("a file where the folder should be")
    runtime = Runtime(make_settings("chat", url=fake.url, record_dir=not_a_folder))
    chat = runtime.new_session()
    for message in ("one", "two"):
        values = await run_turn(chat, message)
        assert answer(values[-1]) == f"Echo: {message}"
        assert any("Recording stopped" in n for n in notices(values[-1])), values[-1]
    await chat.close()
    assert not_a_folder.read_text() == "a file where the folder should be"
    await close(runtime)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_disk_full_mid_session_keeps_the_file_and_the_cleanup(fake: Fake, tmp_path: Path) -> None:
    """A write that fails (ENOSPC) stops recording with a notice; the turns already on
    disk stay playable, and closing the session still deletes its remote thread."""
    runtime = Runtime(make_settings("assistants", url=fake.url, record_dir=tmp_path))
    chat = runtime.new_session()
    assert (await run_turn(chat, "one"))[-1] == "Echo: one"
    writer = chat.recorder
    assert writer is not None
    kept = writer.path.read_bytes()
    writer._file.close()  # type: ignore[union-attr]
    writer._file = open("/dev/full", "wb")  # noqa: SIM115 (the writer closes it)
    values = await run_turn(chat, "two")
    assert answer(values[-1]) == "Echo: two"
    assert any("No space left" in n for n in notices(values[-1])), values[-1]
    await chat.close()  # must not raise, and must still delete the thread
    assert fake.core.live_objects("thread") == []
    assert writer.path.read_bytes() == kept
    assert [t.status for t in load_recording(writer.path).turns] == ["completed"]
    await close(runtime)


def test_a_recording_over_the_file_cap_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for source in sorted((ROOT / "recordings").glob("0[12]-*.jsonl")):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    big = max(tmp_path.iterdir(), key=lambda p: p.stat().st_size)
    monkeypatch.setattr(recording, "MAX_FILE_BYTES", big.stat().st_size - 1)
    library = Library(tmp_path)
    assert big.stem not in library.playable()
    assert len(library.playable()) == 1
    assert any(big.stem in p and "larger than" in p for p in library.problems), library.problems
    with pytest.raises(RecordingError, match="larger than"):
        load_recording(big)


def test_the_reliability_doc_states_the_real_numbers() -> None:
    """docs/reliability.md quotes each cap and default; it must match the code."""
    doc = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    mib = 1024 * 1024
    assert f"{recording.MAX_TURN_BYTES // mib} MiB" in doc
    assert f"{recording.MAX_FOLDER_BYTES // mib} MiB" in doc
    assert f"{recording.MAX_FILE_BYTES // mib} MiB" in doc
    assert f"{READ_TIMEOUT:g} s" in doc
    assert re.search(rf"\b{Settings.max_retries} retries\b", doc)
    # Every test the doc cites exists.
    for file, name in re.findall(r"`tests/(test_\w+\.py)::(test_\w+)", doc):
        assert re.search(rf"def {name}\b", (ROOT / "tests" / file).read_text(encoding="utf-8")), f"{file}::{name}"


# -- configuration --------------------------------------------------------------------

FUNCTION = "tools:\n  - name: f\n    handler: streamchat.demo_tools:get_time\n"

BAD_CONFIGS: list[tuple[str, str]] = [
    # (the YAML, the key the one line must start with); "config" = the file itself
    ("~\n", "config"),
    ("42\n", "config"),
    ("'just text'\n", "config"),
    ("- name: x\n- model: y\n", "config"),
    ("name: [unclosed\n", "config"),
    ("!!python/object/apply:os.system ['true']\n", "config"),  # never run: safe loading
    ("name: x\n\tmodel: y\n", "config"),  # a tab
    (BASE_CONFIG + "1: one\n", "1"),
    (BASE_CONFIG + "nаme: homoglyph\n", "nаme"),  # a Cyrillic а
    (BASE_CONFIG.replace("name: Test assistant", "name: {a: 1}"), "name"),
    (BASE_CONFIG.replace("model: test-model", "model: [gpt]"), "model"),
    (BASE_CONFIG.replace("model: test-model", "model: ''"), "model"),
    (BASE_CONFIG.replace("backend: responses", "backend: ''"), "backend"),
    (BASE_CONFIG + "temperature: .nan\n", "temperature"),
    (BASE_CONFIG + "temperature: .inf\n", "temperature"),
    (BASE_CONFIG + "temperature: '0.5'\n", "temperature"),
    (BASE_CONFIG + "assistant_id: [asst_1]\n", "assistant_id"),
    (BASE_CONFIG + "tools: get_time\n", "tools"),
    (BASE_CONFIG + "tools: [[1]]\n", "tools[0]"),
    (BASE_CONFIG + "tools:\n  - type: [function]\n", "tools[0].type"),
    (BASE_CONFIG + FUNCTION.replace("name: f", "name: 5"), "tools[0].name"),
    (BASE_CONFIG + FUNCTION.replace("name: f", "name: ''"), "tools[0].name"),
    (BASE_CONFIG + FUNCTION + "    description: [x]\n", "tools[0].description"),
    (BASE_CONFIG + FUNCTION + "    timeout: '5'\n", "tools[0].timeout"),
    (BASE_CONFIG + FUNCTION + "    timeout: -1\n", "tools[0].timeout"),
    (BASE_CONFIG + FUNCTION + "    timeout: .nan\n", "tools[0].timeout"),
    (BASE_CONFIG + FUNCTION + "    timeout: .inf\n", "tools[0].timeout"),  # a call must never hang
    (BASE_CONFIG + FUNCTION + "    timeout: true\n", "tools[0].timeout"),
    (BASE_CONFIG + FUNCTION + "    parameters: {type: object, properties: 5}\n", "tools[0].parameters"),
    (BASE_CONFIG + FUNCTION + "    parameters: {type: nothing}\n", "tools[0].parameters"),
    (BASE_CONFIG + FUNCTION.replace("streamchat.demo_tools:get_time", "no_such_module_xyz:f"), "tools[0].handler"),
    (BASE_CONFIG + FUNCTION.replace("streamchat.demo_tools:get_time", "streamchat.demo_tools:nothing"), "tools[0].handler"),
    (BASE_CONFIG + FUNCTION.replace("streamchat.demo_tools:get_time", "os:sep"), "tools[0].handler"),  # not callable
    (BASE_CONFIG + FUNCTION.replace("streamchat.demo_tools:get_time", "':f'"), "tools[0].handler"),
    (BASE_CONFIG + "ui: title\n", "ui"),
    (BASE_CONFIG + "ui:\n  title: null\n", "ui.title"),
    (BASE_CONFIG + "ui:\n  description: 5\n", "ui.description"),
    (BASE_CONFIG + "ui:\n  examples: one\n", "ui.examples"),
    (BASE_CONFIG + "ui:\n  examples: [[a]]\n", "ui.examples[0]"),
    (BASE_CONFIG + "ui:\n  examples: [ok, null]\n", "ui.examples[1]"),
]

BAD_ENVIRONMENT: list[tuple[dict[str, str], str]] = [
    ({"STREAMCHAT_SPEED": "fast"}, "--speed"),
    ({"STREAMCHAT_SPEED": "-1"}, "--speed"),
    ({"STREAMCHAT_SPEED": "nan"}, "--speed"),
    ({"STREAMCHAT_MAX_GAP": "0"}, "--max-gap"),
    ({"STREAMCHAT_READ_TIMEOUT": "0"}, "--read-timeout"),
    ({"STREAMCHAT_READ_TIMEOUT": "inf"}, "--read-timeout"),
    ({"STREAMCHAT_READ_TIMEOUT": "soon"}, "--read-timeout"),
    ({"STREAMCHAT_BACKEND": "bard"}, "backend"),
    ({"STREAMCHAT_CONFIG": "/nonexistent/assistant.yaml"}, "config"),
    ({"STREAMCHAT_REPLAY": "/nonexistent/recordings"}, "/nonexistent/recordings"),
]


def exit_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> str:
    """Import app.py as the app starts, with ``env``; it must exit 2 with one line."""
    for var in ("STREAMCHAT_CONFIG", "STREAMCHAT_MODEL", "STREAMCHAT_RECORD", "STREAMCHAT_REPLAY", "STREAMCHAT_SPEED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(sys, "argv", ["app.py"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        load_app("app_bad_input")
    assert info.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and not out.strip(), err
    assert lines[0].startswith("error: "), lines[0]
    return lines[0].removeprefix("error: ")


@pytest.mark.parametrize(("text", "key"), BAD_CONFIGS, ids=[f"{k}:{n}" for n, (_, k) in enumerate(BAD_CONFIGS)])
def test_every_invalid_config_exits_with_one_line_naming_the_key(
    text: str, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "assistant.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)  # live: the config is all that is wrong
    line = exit_line(monkeypatch, capsys, {"STREAMCHAT_CONFIG": str(path)})
    assert line.startswith(f"{path}: " if key == "config" else f"{key}: "), line
    assert TEST_KEY not in line


@pytest.mark.parametrize(("env", "key"), BAD_ENVIRONMENT, ids=[k for _, k in BAD_ENVIRONMENT])
def test_every_invalid_setting_exits_with_one_line_naming_it(
    env: dict[str, str], key: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    line = exit_line(monkeypatch, capsys, env)
    assert line.startswith(f"{key}: ") or line.startswith(f"{key}:"), line


def test_a_config_file_that_is_not_text_exits_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, data in (("binary.yaml", b"\xff\xfe\x00\x01name: x\n"), ("folder.yaml", None)):
        path = tmp_path / name
        if data is None:
            path.mkdir()
        else:
            path.write_bytes(data)
        line = exit_line(monkeypatch, capsys, {"STREAMCHAT_CONFIG": str(path)})
        assert line.startswith("config: cannot read") and name in line, line


def test_the_config_table_is_broad() -> None:
    """Every top-level key, and the nested ``tools`` and ``ui`` ones, has a bad case."""
    keys = {key.split("[")[0].split(".")[0] for _, key in BAD_CONFIGS}
    assert {"config", "name", "model", "backend", "temperature", "assistant_id", "tools", "ui"} <= keys
    nested = {key for _, key in BAD_CONFIGS if "." in key}
    assert {f"tools[0].{k}" for k in ("type", "name", "description", "timeout", "parameters", "handler")} <= nested
    assert {"ui.title", "ui.description", "ui.examples"} <= {k.split("[")[0] for k in nested}


# -- caps in bytes, per turn, chat and folder (issue 17, case 4) --------------------------------


def turn_bytes(path: Path) -> dict[int, int]:
    """UTF-8 bytes of each turn's lines in a recording."""
    out: dict[int, int] = {}
    for line in path.read_bytes().split(b"\n")[1:]:
        if line:
            turn = json.loads(line)["turn"]
            out[turn] = out.get(turn, 0) + len(line) + 1
    return out


async def test_the_turn_cap_counts_bytes_not_characters(fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2000 × "€" is 2000 characters but 6000 bytes: past a 5000-byte cap."""
    cap = 5000
    monkeypatch.setattr(recording, "MAX_TURN_BYTES", cap)
    euros = "€" * 2000
    fake.push(text_script("chat", euros, size=len(euros)))
    runtime = Runtime(make_settings("chat", url=fake.url, record_dir=tmp_path))
    chat = runtime.new_session()
    values = await run_turn(chat, "euros")
    await chat.close()
    await close(runtime)
    assert answer(values[-1]) == euros
    assert [n for n in notices(values[-1]) if "recording limit of" in n], values[-1]
    path = only_file(tmp_path)
    assert len(path.read_text(encoding="utf-8")) < cap  # in characters it would have fitted
    assert turn_bytes(path)[0] <= cap
    assert [t.status for t in load_recording(path).turns] == ["interrupted"]


async def test_what_the_app_records_it_can_replay(fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten turns each under the turn cap would make a file larger than replay accepts:
    recording stops at the chat's cap (the replay limit) with a notice, and the file
    loads and replays."""
    monkeypatch.setattr(recording, "MAX_TURN_BYTES", 7000)
    monkeypatch.setattr(recording, "MAX_FILE_BYTES", 20_000)
    body = "Seven kilobytes, more or less, of answer. " * 100  # ~4.2 kB of text, ~5.5 kB recorded
    fake.responder = lambda req: text_script(req.api, f"{req.user}: {body}", size=len(body))
    runtime = Runtime(make_settings("chat", url=fake.url, record_dir=tmp_path))
    chat = runtime.new_session()
    stopped_at = None
    history: list[dict[str, Any]] = []
    for n in range(10):
        values = await run_turn(chat, f"turn {n}", history)
        assert answer(values[-1]).startswith(f"turn {n}: ")  # the chat goes on regardless
        history += [{"role": "user", "content": f"turn {n}"}, {"role": "assistant", "content": answer(values[-1])}]
        if stopped_at is None and [m for m in notices(values[-1]) if "reached its limit" in m]:
            stopped_at = n
    await chat.close()
    await close(runtime)
    assert stopped_at is not None and 1 <= stopped_at < 9
    path = only_file(tmp_path)
    assert path.stat().st_size <= recording.MAX_FILE_BYTES
    parsed = load_recording(path)  # the replay limit accepts it
    assert parsed.problems == [] and len(parsed.turns) == stopped_at + 1
    assert all(t.status == "completed" for t in parsed.turns[:stopped_at])
    replay = Runtime(replay_settings(tmp_path))
    assert replay.recordings == [path.stem]
    again = await run_turn(replay.new_session(), "turn 0")
    assert answer(again[-1]).startswith("turn 0: ")


async def test_the_folder_cap_holds_for_sessions_already_open(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two chats open while the folder is small, then record turn after turn: the
    folder cap stops them on the write that would cross it, not at the next session."""
    limit = 15_000
    monkeypatch.setattr(session, "MAX_FOLDER_BYTES", limit)
    fake.responder = lambda req: text_script(req.api, f"{req.user}: " + "words " * 300, size=600)
    runtime = Runtime(make_settings("chat", url=fake.url, record_dir=tmp_path))
    chats = [runtime.new_session(), runtime.new_session()]
    said: list[str] = []
    for n in range(8):
        for i, chat in enumerate(chats):
            values = await run_turn(chat, f"chat {i} turn {n}")
            assert answer(values[-1]).startswith(f"chat {i} turn {n}: ")
            said += [m for m in notices(values[-1]) if "folder reached its limit" in m]
    for chat in chats:
        await chat.close()
    await close(runtime)
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == 2 and said
    assert sum(p.stat().st_size for p in files) <= limit
    for path in files:
        assert load_recording(path).problems == []


# -- one turn at a time per chat (issue 17, case 5) ------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_concurrent_turns_in_one_chat_never_interleave(api: str, fake: Fake, tmp_path: Path) -> None:
    """Four messages sent at once into one chat (as an API client can): one runs, the
    others are refused with a message; the recording holds only whole, own answers."""
    fake.core.speed = 1.0  # the server's recorded pacing: each answer takes ~0.3 s
    fake.responder = lambda req: FaultScript(
        events=synth.timed(BUILDERS[req.api](synth.split_text(f"Echo: {req.user}", 2)), step=0.02)
    )
    runtime = Runtime(make_settings(api, url=fake.url, record_dir=tmp_path))
    chat = runtime.new_session()
    for _round in range(2):
        results = await asyncio.gather(*(run_turn(chat, f"message {n}") for n in range(4)))
        finals = [answer(values[-1]) for values in results]
        ran = [n for n, final in enumerate(finals) if final == f"Echo: message {n}"]
        refused = [n for n, final in enumerate(finals) if BUSY in repr(results[n][-1])]
        assert len(ran) == 1 and sorted(ran + refused) == [0, 1, 2, 3], finals
    await chat.close()
    await close(runtime)
    parsed = load_recording(only_file(tmp_path))
    assert parsed.problems == [] and len(parsed.turns) == 2
    for turn in parsed.turns:
        replayed = Runtime(replay_settings(tmp_path))
        values = await run_turn(replayed.new_session(), turn.user)
        assert answer(values[-1]) == f"Echo: {turn.user}"
        assert turn.status == "completed"


# -- STREAMCHAT_RECORD (issue 17, case 7) ---------------------------------------------------


@pytest.mark.parametrize("value", ["false", "off", "no", "0", "none", "", "NONE", " Off "])
def test_record_off_values_turn_recording_off_and_say_so(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # a folder named after the value would appear here
    caplog.set_level(logging.INFO, logger="streamchat")
    settings, _ = settings_from([], {"OPENAI_API_KEY": TEST_KEY, "STREAMCHAT_RECORD": value})
    assert settings.mode == "live" and settings.record_dir is None
    assert [r for r in caplog.records if "Recording is off" in r.getMessage()], caplog.records
    assert list(tmp_path.iterdir()) == []


def test_record_on_values_and_folders(tmp_path: Path) -> None:
    for value in ("1", "true", "Yes", "on"):
        settings, _ = settings_from([], {"OPENAI_API_KEY": TEST_KEY, "STREAMCHAT_RECORD": value})
        assert settings.record_dir == ROOT / "recordings"
    settings, _ = settings_from([], {"OPENAI_API_KEY": TEST_KEY, "STREAMCHAT_RECORD": str(tmp_path / "none-of-these")})
    assert settings.record_dir == tmp_path / "none-of-these"
    settings, _ = settings_from(["--record", "none"], {"OPENAI_API_KEY": TEST_KEY})
    assert settings.record_dir is None
