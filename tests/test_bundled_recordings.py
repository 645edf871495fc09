"""The bundled recordings: generated deterministically by scripts/make_recordings.py,
marked synthetic, playable turn by turn, and covering what the app promises to show
with no API key."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import ROOT, replay_settings, turn_transcript

from streamchat.options import DEFAULT_RECORDINGS, settings_from
from streamchat.recording import Recording, load_recording
from streamchat.session import Runtime
from streamchat.transcript import Transcript

BUNDLED = ROOT / "recordings"
PATHS = sorted(BUNDLED.glob("*.jsonl"))


def make_recordings() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_recordings", ROOT / "scripts" / "make_recordings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_recordings"] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["make_recordings"]
    return module


def test_generator_is_deterministic_and_matches_the_committed_files(tmp_path: Path) -> None:
    module = make_recordings()
    module.write(tmp_path / "a")
    module.write(tmp_path / "b")
    first = {p.name: p.read_bytes() for p in sorted((tmp_path / "a").iterdir())}
    second = {p.name: p.read_bytes() for p in sorted((tmp_path / "b").iterdir())}
    assert first == second
    committed = {p.name: p.read_bytes() for p in PATHS}
    assert sorted(first) == sorted(committed), "run: python -m scripts.make_recordings"
    for name, data in first.items():
        assert data == committed[name], f"{name} differs from the generator's output: python -m scripts.make_recordings"


async def replay_all(path: Path) -> tuple[Recording, list[Transcript]]:
    """Replay every turn of a recording in order, the history carried along."""
    runtime = Runtime(replay_settings(path))
    recording = runtime.library.load(path.stem)  # type: ignore[union-attr]
    session = runtime.new_session()
    history: list[dict[str, Any]] = []
    out = []
    for turn in recording.turns:
        transcript = await turn_transcript(session, turn.user, history)
        out.append(transcript)
        history += [{"role": "user", "content": turn.user}, *transcript.snapshot()]
    await session.close()
    return recording, out


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
async def test_each_bundled_recording_is_synthetic_and_replays_to_its_recorded_status(path: Path) -> None:
    recording = load_recording(path)
    assert recording.problems == []
    assert recording.header["source"] == "synthetic" and recording.synthetic
    assert recording.turns and all(turn.streams for turn in recording.turns)
    _, transcripts = await replay_all(path)
    for turn, transcript in zip(recording.turns, transcripts, strict=True):
        assert transcript.status == turn.status, f"turn {turn.index}"
        assert transcript.text, f"turn {turn.index} shows no answer"


async def test_the_bundle_covers_what_the_app_promises() -> None:
    replayed = [await replay_all(path) for path in PATHS]
    recordings = [r for r, _ in replayed]
    assert {r.api for r in recordings} == {"responses", "assistants", "chat"}
    assert any(len(r.turns) >= 3 for r in recordings), "a multi-turn conversation"
    kana = re.compile(r"[\u3040-\u30ff]")
    assert any(kana.search(t.text) for _, ts in replayed for t in ts), "an answer in Japanese"
    assert any("```" in t.text and re.search(r"^#+ ", t.text, re.M) for _, ts in replayed for t in ts), "Markdown with code"
    assert any(t.status == "failed" and len(t.text) > 20 for _, ts in replayed for t in ts), "an answer cut by an error"
    assert any(len(r.turns) == 1 and r.turns[0].status == "completed" and len(ts[0].text) < 400 for r, ts in replayed), (
        "a short plain answer"
    )


def test_without_a_key_the_app_replays_the_bundled_recordings() -> None:
    settings, _ = settings_from([], env={})
    assert settings.mode == "replay" and settings.api_key is None
    assert settings.replay_path == DEFAULT_RECORDINGS == BUNDLED
    assert settings.record_dir is None
    runtime = Runtime(settings)
    assert runtime.recordings == [p.stem for p in PATHS]
    assert runtime.library is not None and runtime.library.problems == []
    # With a key, the same command is live.
    live, _ = settings_from([], env={"OPENAI_API_KEY": "sk-test-not-real-000000"})
    assert live.mode == "live"
