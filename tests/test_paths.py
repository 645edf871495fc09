"""Paths a user can influence: the recording picker, the download and Gradio's file
route accept only what the server listed or handed out itself; `../`, absolute paths,
symlinks and odd characters are refused, and nothing outside is ever read."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

import gradio as gr
import httpx2
import pytest
from conftest import ROOT, Fake, make_settings, replay_settings, run_turn
from test_load import launched_app

from streamchat import ui
from streamchat.recording import RecordingError
from streamchat.replay import Library
from streamchat.session import Runtime

WELCOME = ROOT / "recordings" / "01-welcome.jsonl"
MULTI = ROOT / "recordings" / "02-multi-turn.jsonl"

HOSTILE_NAMES = [
    "",
    ".",
    "..",
    "../outside",
    "../../outside",
    "good/../outside",
    "good/",
    "./good",
    "good.jsonl",
    "/etc/passwd",
    "~/outside",
    "..\\outside",
    "%2e%2e%2foutside",
    "file:///etc/passwd",
    "good\x00",
    "good\x00../outside",
    "good\n",
    "good\r\n",
    " good",
    "good ",
    "GOOD",
    "ｇｏｏｄ",  # fullwidth: NFKC-equal to "good", still not the listed name
    "go\u200bod",  # zero-width space
    "good\u202e",  # right-to-left override
    "goo\u0064\u0301",  # combining accent
    "g" * 10_000,
]
"""Names no server listed. The absolute path of a listed file is added per test."""


def make_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "recs"
    folder.mkdir()
    (folder / "good.jsonl").write_bytes(WELCOME.read_bytes())
    (folder / "other.jsonl").write_bytes(MULTI.read_bytes())
    (tmp_path / "outside.jsonl").write_bytes(WELCOME.read_bytes())
    return folder


def test_the_library_loads_only_names_it_listed(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    library = Library(folder)
    assert library.playable() == ["good", "other"]
    for name in [*HOSTILE_NAMES, str(folder / "good"), str(folder / "good.jsonl"), str(tmp_path / "outside")]:
        with pytest.raises(RecordingError, match="not one of the listed recordings"):
            library.load(name)
    assert set(library._cache) == {"good", "other"}  # nothing else was ever read


def test_the_folder_lists_only_plain_files_with_plain_names(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    odd = [
        "new\nline.jsonl",
        ".hidden.jsonl",
        "-dash.jsonl",
        "sp ace.jsonl",
        "café.jsonl",
        "ｆｕｌｌ.jsonl",
        "rtl\u202elnosj.jsonl",
        "tab\tname.jsonl",
        "x" * 130 + ".jsonl",
    ]
    for name in odd:
        (folder / name).write_bytes(WELCOME.read_bytes())
    (folder / "dir.jsonl").mkdir()
    (folder / "inside-link.jsonl").symlink_to(folder / "good.jsonl")
    (folder / "outside-link.jsonl").symlink_to(tmp_path / "outside.jsonl")
    (folder / "etc-link.jsonl").symlink_to("/etc/passwd")
    os.mkfifo(folder / "fifo.jsonl")  # reading it would block forever
    (folder / "notes.txt").write_text("not a recording")

    library = Library(folder)
    assert library.names == ["good", "other"]  # checked before anything is read
    assert library.playable() == ["good", "other"]
    skipped = {p.split(":")[0] for p in library.problems}
    expected = {*odd, "dir.jsonl", "inside-link.jsonl", "outside-link.jsonl", "etc-link.jsonl", "fifo.jsonl"}
    assert skipped == expected


def test_a_listed_file_swapped_after_listing_is_refused(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    library = Library(folder)
    assert library.names == ["good", "other"]
    (folder / "good.jsonl").unlink()
    (folder / "good.jsonl").symlink_to(tmp_path / "outside.jsonl")
    with pytest.raises(RecordingError, match="symlink"):
        library.load("good")
    (folder / "other.jsonl").unlink()
    (folder / "other.jsonl").mkdir()
    with pytest.raises(RecordingError, match="cannot read"):
        library.load("other")


def handler(demo: gr.Blocks, name: str) -> Any:
    [fn] = [f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name]
    return fn


async def test_the_recording_picker_accepts_only_listed_names(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    runtime = Runtime(replay_settings(folder))
    demo = ui.build_demo(runtime)
    on_pick = handler(demo, "on_pick")
    slot = ui.SessionSlot()
    chat = slot.get(runtime)
    assert chat.recording_name == "good"
    hostile: list[Any] = [
        *HOSTILE_NAMES,
        str(folder / "other.jsonl"),
        str(tmp_path / "outside"),
        None,
        5,
        ["other"],
        {"name": "other"},
    ]
    for name in hostile:
        with pytest.raises(gr.Error):
            await on_pick(name, 0.0, slot)
        assert chat.recording_name == "good"
    await on_pick("other", 0.0, slot)
    assert chat.recording_name == "other"
    assert set(runtime.library._cache) <= {"good", "other"}  # type: ignore[union-attr]


async def test_the_download_offers_only_the_sessions_own_file(fake: Fake, tmp_path: Path) -> None:
    """Two tabs: each is offered its own recording, chosen by the server; a recording
    replaced by a symlink, or a path outside the folder, is never offered."""
    record = tmp_path / "rec"
    runtime = Runtime(make_settings("chat", url=fake.url, record_dir=record))
    slots = [ui.SessionSlot(), ui.SessionSlot()]
    for n, slot in enumerate(slots):
        await run_turn(slot.get(runtime), f"tab {n}")
    paths = [ui.session_file(runtime, slot) for slot in slots]
    assert paths[0] is not None and paths[1] is not None and paths[0] != paths[1]
    for n, path in enumerate(paths):
        assert path is not None and path.parent == record
        assert f"tab {n}" in path.read_text() and f"tab {1 - n}" not in path.read_text()
    # A path that is not a plain file directly in the folder is never offered.
    target = paths[0]
    assert target is not None
    target.unlink()
    target.symlink_to(tmp_path / "elsewhere.jsonl")
    (tmp_path / "elsewhere.jsonl").write_text("not yours")
    slots[0].session.recorder = None  # type: ignore[union-attr]
    assert ui.session_file(runtime, slots[0]) is None
    slots[1].recorded = tmp_path / "elsewhere.jsonl"
    slots[1].session.recorder = None  # type: ignore[union-attr]
    assert ui.session_file(runtime, slots[1]) is None
    for slot in slots:
        slot.cleanup()
    await runtime.shutdown()
    assert runtime.client is not None
    await runtime.client.close()


def test_gradio_serves_no_file_the_app_did_not_hand_out(fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    record = tmp_path / "rec"
    record.mkdir()
    (record / "someone-else.jsonl").write_text("another tab's recording")
    targets = [
        str(ROOT / "app.py"),
        "app.py",
        "assistant_config.yaml",
        "recordings/01-welcome.jsonl",
        str(WELCOME),
        str(record / "someone-else.jsonl"),
        "/etc/passwd",
        "../app.py",
        "../../etc/passwd",
        urllib.parse.quote(str(ROOT / "app.py"), safe=""),
        "..%2Fapp.py",
        "%2e%2e/app.py",
        "app.py%00.png",
    ]
    with launched_app(fake, "responses", monkeypatch, STREAMCHAT_RECORD=str(record)) as (_, url):
        for target in targets:
            for route in ("gradio_api/file=", "gradio_api/file/", "file="):
                response = httpx2.get(url + route + target, timeout=10)
                assert response.status_code in (403, 404), (route, target, response.status_code)
                assert "another tab" not in response.text and "import" not in response.text


def test_the_app_never_imports_its_test_tooling() -> None:
    """``streamchat.testing`` (synthetic streams, fault injection) is for tests and bench only."""
    import subprocess
    import sys

    code = "import sys, app; bad = sorted(m for m in sys.modules if m.startswith('streamchat.testing')); print(','.join(bad))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OPENAI_API_KEY": ""}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
