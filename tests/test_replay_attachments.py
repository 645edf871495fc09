"""Replaying a multimodal chat: a turn answers a message with the same text and the same
files (by SHA-256, by name for files recorded without one), a message whose files match
no turn gets the local reply naming the recorded prompts and their files, tool files are
served back, and the recording's own files come back as the examples' thumbnails and
with the demo's messages."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import BUILDERS, replay_settings

from streamchat.attachments import Attachment, Limits, classify
from streamchat.demo_mode import Controls, Timing, play
from streamchat.playback import example_messages, files_folder, recorded_attachments, safe_name
from streamchat.recording import RecordingWriter, header, load_recording
from streamchat.replay import Player
from streamchat.replay_server import UnionSource
from streamchat.replayapi import TurnRequest
from streamchat.session import ChatSession, Runtime
from streamchat.testing import synth
from streamchat.transcript import Transcript

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
DOG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 2
NOTES = b"# Notes\n\nThe plan, in three lines.\n"


def cat(name: str = "cat.png") -> Attachment:
    return classify(PNG, name, Limits())


def dog(name: str = "dog.png") -> Attachment:
    return classify(DOG, name, Limits())


def notes() -> Attachment:
    return classify(NOTES, "notes.md", Limits())


Turn = tuple[str, list[Any], str]


def write(path: Path, turns: list[Turn], *, keep: bool = False, api: str = "responses") -> Path:
    """A recording made by the real writer: each turn's prompt, files and answer."""
    writer = RecordingWriter(path, header(api, "test-model", "x"), record_attachments=keep)
    for position, (user, files, answer) in enumerate(turns):
        writer.begin_turn(user, position=position, attachments=files)
        writer.stream_started()
        for _, raw in synth.timed(BUILDERS[api](synth.split_text(answer, 4)), step=0):
            writer.event(raw)
        writer.end_turn("completed")
    writer.close()
    return path


def strip_hashes(path: Path) -> Path:
    """The recording as an importer without the bytes writes it: files by name only."""
    text = path.read_text(encoding="utf-8")
    for digest in (hashlib.sha256(b).hexdigest() for b in (PNG, DOG, NOTES)):
        text = text.replace(f',"sha256":"{digest}"', "")
    path.write_text(text, encoding="utf-8")
    return path


@dataclass(frozen=True)
class FilesRequest(TurnRequest):
    """A ``TurnRequest`` as the fake API makes it once it knows the message's files."""

    attachments: tuple[str, ...] = ()


async def ask(session: ChatSession, message: str, files: list[Attachment], history: list[dict[str, Any]] | None = None) -> str:
    transcript = Transcript()
    async for _ in session.turn_events(message, history or [], transcript, files):
        pass
    return transcript.text


# -- matching ---------------------------------------------------------------------------------


def test_a_turn_with_files_answers_only_the_same_files(tmp_path: Path) -> None:
    rec = load_recording(
        write(
            tmp_path / "a.jsonl",
            [
                ("What is this?", [cat()], "A cat."),
                ("What is this?", [dog()], "A dog."),
                ("What is this?", [], "Nothing attached."),
                ("Compare", [cat(), notes()], "Compared."),
            ],
        )
    )
    player = Player(rec)

    def answered(message: str, files: list[Any]) -> int | None:
        turn = player.match(message, 0, attachments=files)
        return None if turn is None else turn.index

    assert answered("What is this?", [cat()]) == 0
    assert answered("what is this", [cat("renamed.png")]) == 0  # the bytes count, not the name
    assert answered("What is this?", [dog()]) == 1
    assert answered("What is this?", []) == 2
    assert answered("What is this?", [cat(), dog()]) is None
    assert answered("Compare", [cat(), notes()]) == 3
    assert answered("Compare", [notes(), cat()]) == 3  # in any order (a driver may send some elsewhere first)
    assert answered("Compare", [cat()]) is None
    # A recorded file missing from the message counts when file_search reaches it.
    assert player.match("Compare", 0, attachments=[cat()], searchable=[hashlib.sha256(NOTES).hexdigest()]).index == 3  # type: ignore[union-attr]
    assert player.match("Compare", 0, attachments=[cat()], searchable=[hashlib.sha256(PNG).hexdigest()]) is None
    assert answered("Compare", [hashlib.sha256(PNG).hexdigest(), hashlib.sha256(NOTES).hexdigest()]) == 3  # hashes alone


def test_files_recorded_without_a_hash_match_by_name(tmp_path: Path) -> None:
    path = strip_hashes(write(tmp_path / "a.jsonl", [("What is this?", [cat()], "A cat.")]))
    rec = load_recording(path)
    assert rec.turns[0].attachments[0].sha256 is None and rec.problems == []
    player = Player(rec)
    assert player.match("What is this?", 0, attachments=[dog("CAT.png")]) is not None  # any bytes, same name
    assert player.match("What is this?", 0, attachments=[dog()]) is None
    # A request carrying hashes only: matched once the session has named that hash.
    fresh = Player(rec)
    request = FilesRequest("responses", "What is this?", 0, 0, {}, attachments=(hashlib.sha256(DOG).hexdigest(),))
    assert fresh(request).status == 404
    assert fresh.match("What is this?", 0, attachments=[dog("cat.png")]) is not None
    assert fresh(request).status == 200


def test_the_fake_apis_request_is_matched_by_its_files_hashes(tmp_path: Path) -> None:
    rec = load_recording(write(tmp_path / "a.jsonl", [("What is this?", [cat()], "A cat."), ("Hi", [], "Hello.")]))
    player = Player(rec)
    asked = FilesRequest("responses", "What is this?", 0, 0, {}, attachments=(cat().sha256,))
    assert player(asked).status == 200 and player(asked).events
    wrong = player(FilesRequest("responses", "What is this?", 0, 0, {}, attachments=(dog().sha256,)))
    assert wrong.status == 404 and wrong.error is not None
    assert "- What is this? (with cat.png)" in wrong.error["message"] and dog().sha256[:12] in wrong.error["message"]
    assert player(FilesRequest("responses", "What is this?", 0, 0, {})).status == 404  # the files were not sent
    union = UnionSource([player])
    assert union(asked).status == 200
    missed = union(FilesRequest("responses", "Hi", 0, 0, {}, attachments=(cat().sha256,)))
    assert missed.status == 404 and missed.error is not None and "with 1 file" in missed.error["message"]


async def test_replay_answers_a_message_with_the_recorded_files_and_names_them_when_they_differ(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", [("What is this?", [cat()], "It is a cat."), ("Hi", [], "Hello there.")])
    runtime = Runtime(replay_settings(path))
    session = runtime.new_session()
    assert await ask(session, "What is this?", [cat()]) == "It is a cat."
    assert session.replayed is not None and session.replayed.index == 0
    other = runtime.new_session()
    reply = await ask(other, "What is this?", [dog()])
    assert "nothing in it answers “What is this?” with dog.png" in reply
    assert "- What is this? (with cat.png)" in reply and "- Hi\n" in reply + "\n"
    assert "It is a cat." not in reply and other.replayed is None
    assert "nothing in it answers" in await ask(runtime.new_session(), "What is this?", [])


# -- files tools produced ------------------------------------------------------------------------


def test_player_serves_the_files_tools_produced(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = RecordingWriter(path, header("assistants", "m", "x"))
    writer.begin_turn("Plot it")
    writer.output_file("file-plot1", "plot.png", PNG)
    writer.end_turn("completed")
    writer.begin_turn("And the data")
    writer.output_file("file-csv1", "data.csv", b"a,b\n1,2\n")
    writer.end_turn("completed")
    writer.close()
    player = Player(load_recording(path))
    assert player.file_content("file-plot1") == ("plot.png", PNG)
    assert player.file_content("file-csv1") == ("data.csv", b"a,b\n1,2\n")
    assert player.file_content("file-nope") is None
    assert UnionSource([player]).file_content("file-csv1") == ("data.csv", b"a,b\n1,2\n")
    lines = path.read_text(encoding="utf-8").replace('"data":', '"gone":')  # a file kept by name and hash only
    path.write_text(lines, encoding="utf-8")
    assert Player(load_recording(path)).file_content("file-plot1") is None


# -- thumbnails and the demo ----------------------------------------------------------------------


def test_examples_carry_the_recorded_files_when_the_recording_kept_their_bytes(tmp_path: Path) -> None:
    turns: list[Turn] = [
        ("What is this?", [cat()], "A cat."),
        ("What is this?", [cat()], "A cat again."),
        ("Read it", [notes()], "Read."),
        ("Hi", [], "Hello."),
    ]
    kept = example_messages(load_recording(write(tmp_path / "kept.jsonl", turns, keep=True)))
    assert [m["text"] for m in kept] == ["What is this?", "Read it", "Hi"]  # each prompt once, with its files
    picture, document = Path(kept[0]["files"][0]), Path(kept[1]["files"][0])
    assert (picture.name, picture.read_bytes()) == ("cat.png", PNG)
    assert (document.name, document.read_bytes()) == ("notes.md", NOTES)
    assert "files" not in kept[2]
    folder = files_folder()
    assert picture.is_relative_to(folder) and Path(tempfile.gettempdir()).resolve() in folder.resolve().parents
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700  # private to this process's user
    again = example_messages(load_recording(tmp_path / "kept.jsonl"))
    assert again[0]["files"] == kept[0]["files"]  # written once
    bare = example_messages(load_recording(write(tmp_path / "bare.jsonl", turns)))
    assert bare == [{"text": "What is this?"}, {"text": "Read it"}, {"text": "Hi"}]


@pytest.mark.parametrize(
    ("given", "made"), [("../../etc/passwd", "passwd"), (".env", "env"), ("a\\b:c?.png", "b_c_.png"), ("", "file")]
)
def test_recorded_names_become_safe_file_names(given: str, made: str) -> None:
    assert safe_name(given) == made


async def collect_demo(path: Path) -> list[Any]:
    session = Runtime(replay_settings(path)).new_session()
    frames = [f async for f in play(load_recording(path), session, Controls(), timing=Timing(typing=False, max_gap=0.0))]
    assert frames[-1].state == "done"
    return frames[-1].history


async def test_the_demo_sends_the_recorded_files_and_shows_them(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.jsonl", [("What is this?", [cat()], "It is a cat."), ("Thanks", [], "You are welcome.")], keep=True
    )
    history = await collect_demo(path)
    asked, answer, thanks, welcome = history
    [thumbnail, text] = asked["content"]
    assert thumbnail["type"] == "file" and thumbnail["file"]["orig_name"] == "cat.png"
    assert Path(thumbnail["file"]["path"]).read_bytes() == PNG
    assert text == {"type": "text", "text": "What is this?"}
    assert answer["content"] == "It is a cat." and thanks["content"] == "Thanks" and welcome["content"] == "You are welcome."
    [files] = [recorded_attachments(t) for t in load_recording(path).turns[:1]]
    assert [(a.name, a.sha256, a.kind) for a in files] == [("cat.png", cat().sha256, "image")]


async def test_the_demo_plays_a_turn_whose_files_bytes_were_not_recorded(tmp_path: Path) -> None:
    """It cannot send the files again: the turn it plays is pinned, and answers; a
    visitor's message afterwards is matched as usual (files and all)."""
    path = write(tmp_path / "a.jsonl", [("What is this?", [cat()], "It is a cat.")])
    runtime = Runtime(replay_settings(path))
    session = runtime.new_session()
    frames = [f async for f in play(load_recording(path), session, Controls(), timing=Timing(typing=False, max_gap=0.0))]
    asked, answer = frames[-1].history
    assert asked["content"] == "What is this?" and answer["content"] == "It is a cat."
    assert session.playback is not None and session.playback.loaded_player().pinned is None
    await session.reset()
    assert "nothing in it answers" in await ask(session, "What is this?", [])
