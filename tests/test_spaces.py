"""Hugging Face Spaces: safe defaults on a public Space, and the optional upload of
recordings to a dataset repository (with a stand-in for the Hub: nothing leaves the
machine)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ROOT, Fake, run_turn, text_script

from streamchat.options import DEFAULT_RECORDINGS, settings_from
from streamchat.recording import RecordingWriter, header
from streamchat.spaces import ENV_DATASET, on_space, start_dataset_sync

SPACE = {"SPACE_ID": "someone/streaming-assistant", "OPENAI_API_KEY": "sk-space-secret"}


def test_a_public_space_records_nothing_unless_a_variable_says_so() -> None:
    assert on_space(SPACE) and not on_space({})
    settings, _ = settings_from([], SPACE)
    assert settings.mode == "live" and settings.record_dir is None
    settings, _ = settings_from([], {**SPACE, "STREAMCHAT_RECORD": "1"})
    assert settings.record_dir == DEFAULT_RECORDINGS
    settings, _ = settings_from([], {"SPACE_ID": "someone/streaming-assistant"})
    assert settings.mode == "replay" and settings.replay_path == DEFAULT_RECORDINGS


class FakeHub:
    """What CommitScheduler asks of ``HfApi``: the commits are kept, not sent."""

    def __init__(self) -> None:
        self.repos: list[dict[str, Any]] = []
        self.commits: list[dict[str, bytes]] = []
        self._pool = ThreadPoolExecutor(1)

    def create_repo(self, **kw: Any) -> Any:
        self.repos.append(kw)
        return SimpleNamespace(repo_id=kw["repo_id"])

    def run_as_future(self, fn: Any, *args: Any, **kw: Any) -> Future[Any]:
        return self._pool.submit(fn, *args, **kw)

    def create_commit(self, *, operations: list[Any], **kw: Any) -> Any:
        self.commits.append({op.path_in_repo: op.path_or_fileobj.read() for op in operations})
        return SimpleNamespace(oid="0" * 40)


async def test_recordings_go_to_the_dataset_in_whole_lines(fake: Fake, live_runtime: Any, tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    runtime = live_runtime("responses", record_dir=tmp_path / "recordings")
    hub = FakeHub()
    env = {ENV_DATASET: "someone/recordings", "STREAMCHAT_HF_EVERY": "60"}
    scheduler = start_dataset_sync(runtime, env, hf_api=hub)
    try:
        assert hub.repos[0]["repo_type"] == "dataset" and hub.repos[0]["private"] is True
        assert runtime.record_lock is scheduler.lock
        fake.push(text_script("responses", "Recorded, then uploaded."))
        session = runtime.new_session()
        await run_turn(session, "upload this")
        assert session.recorder is not None and session.recorder._lock is scheduler.lock
        scheduler.trigger().result(timeout=10)
        uploaded = {k: v for commit in hub.commits for k, v in commit.items()}
        path = session.recorder.path
        assert uploaded == {f"recordings/{path.name}": path.read_bytes()}
        assert uploaded[f"recordings/{path.name}"].endswith(b"\n")
    finally:
        scheduler.stop()


def test_each_line_is_written_while_the_lock_is_held(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    seen: list[tuple[str, int]] = []

    class Lock:
        def __enter__(self) -> None:
            seen.append(("enter", path.stat().st_size if path.exists() else 0))

        def __exit__(self, *exc: object) -> None:
            seen.append(("exit", path.stat().st_size))

    writer = RecordingWriter(path, header("responses", "m", "0"), lock=Lock())
    writer.begin_turn("hi")
    writer.end_turn("completed")
    writer.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(seen) == 2 * len(lines) == 6
    # Every byte was written between an enter and its exit, a whole line each time.
    sizes = [size for _, size in seen]
    assert sizes == sorted(sizes) and sizes[-1] == path.stat().st_size
    assert all(seen[i][1] == seen[i - 1][1] for i in range(2, len(seen), 2))
    assert all(seen[i + 1][1] > seen[i][1] for i in range(0, len(seen), 2))


def test_the_app_needs_no_huggingface_hub(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['huggingface_hub'] = None\n"
        "from streamchat.spaces import start_dataset_sync\n"
        "from streamchat.cli import chat_loop\n"
        "from streamchat.session import Runtime\n"
        "from streamchat.options import settings_from\n"
        f"settings, _ = settings_from(['--record', {str(tmp_path)!r}], {{'OPENAI_API_KEY': 'sk-x', {ENV_DATASET!r}: 'a/b'}})\n"
        f"print(start_dataset_sync(Runtime(settings), {{{ENV_DATASET!r}: 'a/b'}}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"
    assert "huggingface_hub is not installed" in result.stderr


def test_on_a_space_without_the_variable_the_record_toggle_is_off_and_says_why(
    monkeypatch: pytest.MonkeyPatch, live_runtime: Any, tmp_path: Path
) -> None:
    import gradio as gr

    from streamchat.ui import RECORD_OFF_SPACE, build_demo

    monkeypatch.setenv("SPACE_ID", SPACE["SPACE_ID"])

    def toggle(runtime: Any) -> Any:
        demo = build_demo(runtime)
        return next(b for b in demo.blocks.values() if isinstance(b, gr.Checkbox) and b.elem_id == "record-toggle")

    off = toggle(live_runtime("responses"))
    assert off.value is False and off.interactive is False and off.info == RECORD_OFF_SPACE
    on = toggle(live_runtime("responses", record_dir=tmp_path))
    assert on.value is True and on.interactive is not False
