"""The first ten minutes: `--help` and start-up errors answer without loading Gradio,
bad inputs stop with one line (exit 2), the console and the banner say what the app
talks to, example configs replay what fits them, and a replay offers its next prompt."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TEST_KEY, make_settings, replay_settings, run_turn

from streamchat.config import ConfigError
from streamchat.main import prepare
from streamchat.options import DEFAULT_SERVER, check_server_env, server_label, settings_from
from streamchat.recording import RecordingError
from streamchat.replay import Player, normalize
from streamchat.session import Runtime

PROBE = """
import runpy, sys
sys.argv = ["app.py", *sys.argv[1:]]
code = 0
try:
    runpy.run_path("app.py", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("PROBE", "gradio" in sys.modules, "openai" in sys.modules, code)
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL") and not k.startswith(("STREAMCHAT_", "GRADIO_"))
    }
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    env.update(extra)
    return env


def run_app(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``python app.py ARGS`` (through runpy, to look at what it imported before it exited)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=120
    )
    probe = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert probe, (result.stdout, result.stderr)
    _, gradio, openai, code = probe[-1].split()
    return result, {"gradio": gradio == "True", "openai": openai == "True", "code": int(code) if code != "None" else 0}


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


def test_help_loads_neither_gradio_nor_the_sdk() -> None:
    result, seen = run_app("--help")
    assert seen == {"gradio": False, "openai": False, "code": 0}
    assert "--replay" in result.stdout and "GRADIO_SERVER_NAME" in result.stdout


def test_a_config_error_stops_before_gradio_loads(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninstructions: y\nmodel: z\ntemprature: 1\n", encoding="utf-8")
    result, seen = run_app("--config", str(bad))
    assert seen == {"gradio": False, "openai": False, "code": 2}
    assert one_error_line(result).startswith("temprature: unknown key")


@pytest.mark.parametrize("port", ["99999", "0", "http", "-1"])
def test_a_bad_gradio_server_port_is_one_line(port: str) -> None:
    result, seen = run_app(GRADIO_SERVER_PORT=port)
    assert seen["code"] == 2 and not seen["gradio"]
    assert one_error_line(result).startswith("GRADIO_SERVER_PORT: ") and port in result.stderr


def bad_replays(folder: Path) -> dict[str, Path]:
    empty_dir = folder / "empty"
    empty_dir.mkdir()
    (empty_dir / "notes.txt").write_text("not a recording", encoding="utf-8")
    empty_file = folder / "empty.jsonl"
    empty_file.write_bytes(b"")
    corrupt = folder / "corrupt.jsonl"
    corrupt.write_text('{"kind": "header", "format": "streamchat-rec\n', encoding="utf-8")
    return {"empty folder": empty_dir, "empty file": empty_file, "corrupt file": corrupt}


def test_bad_replay_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    for what, path in bad_replays(tmp_path).items():
        for args, env in ((["--replay", str(path)], {}), ([], {"STREAMCHAT_REPLAY": str(path)})):
            result, seen = run_app(*args, **env)
            assert seen["code"] == 2 and not seen["gradio"], (what, result.stderr)
            line = one_error_line(result)
            assert line.startswith(f"{path}: nothing to replay"), (what, line)


def test_an_explicit_replay_with_damaged_lines_still_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only a replay with nothing playable stops: a damaged line is said, once, and skipped."""
    good = (ROOT / "recordings" / "01-welcome.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "damaged.jsonl"
    path.write_text("\n".join([*good, "{not json"]) + "\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="streamchat"):
        runtime, _ = prepare(["--replay", str(path)], env={})
    assert runtime.recordings == ["damaged"]
    assert any("damaged" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_check_server_env_accepts_a_real_port() -> None:
    check_server_env({"GRADIO_SERVER_PORT": "7860"})
    check_server_env({})
    with pytest.raises(ConfigError, match=r"^GRADIO_SERVER_PORT: "):
        check_server_env({"GRADIO_SERVER_PORT": "65536"})


# -- what the console and the banner say --------------------------------------------------


def startup_lines(caplog: pytest.LogCaptureFixture, argv: list[str], env: dict[str, str]) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="streamchat"):
        prepare(argv, env=env)
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(("replay mode", "live mode"))]


def test_one_console_line_says_replay_or_live_and_why(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    (line,) = startup_lines(caplog, [], {})
    bundled = len(list((ROOT / "recordings").glob("*.jsonl")))
    assert line.startswith("replay mode (no OPENAI_API_KEY is set)") and f"{bundled} recordings" in line
    (line,) = startup_lines(caplog, ["--replay", str(ROOT / "recordings" / "02-multi-turn.jsonl")], {"OPENAI_API_KEY": TEST_KEY})
    assert line.startswith("replay mode (--replay was given): 1 recording")
    (line,) = startup_lines(caplog, [], {"STREAMCHAT_REPLAY": str(ROOT / "recordings")})
    assert line.startswith("replay mode (STREAMCHAT_REPLAY is set)")
    (line,) = startup_lines(caplog, ["--config", str(ROOT / "examples" / "frieza.yaml")], {})
    assert line.startswith("replay mode (no OPENAI_API_KEY is set; the config names its recording)")
    env = {"OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    (line,) = startup_lines(caplog, ["--backend", "chat", "--record", str(tmp_path)], env)
    assert line.startswith("live mode (OPENAI_API_KEY is set): chat backend at 127.0.0.1:9, model gpt-5-mini")
    assert str(tmp_path) in line and TEST_KEY not in line


def test_server_label_is_host_and_port_of_the_base_url() -> None:
    assert server_label(None) == DEFAULT_SERVER
    assert server_label("http://127.0.0.1:8000/v1") == "127.0.0.1:8000"
    assert server_label("https://user:secret@example.org/v1") == "example.org"
    assert server_label("localhost:11434/v1") == "localhost:11434"


def test_live_banner_names_the_server() -> None:
    from streamchat.ui import banner_text

    live = Runtime(make_settings("responses", url="http://127.0.0.1:8123/v1"))
    assert "server `127.0.0.1:8123`" in banner_text(live)
    default = Runtime(make_settings("responses", url=""))  # no client call is made: only the banner is read
    assert f"server `{DEFAULT_SERVER}`" in banner_text(default)


def test_the_replay_banner_offers_the_next_recorded_prompt() -> None:
    from streamchat.ui import asked_from, banner_text

    runtime = Runtime(replay_settings(ROOT / "recordings"))
    session = runtime.new_session("02-multi-turn")
    prompts = runtime.library.load("02-multi-turn").prompts if runtime.library else []
    assert len(prompts) == 3
    assert "ask one of the example prompts" in banner_text(runtime, session, 0)
    history: list[dict[str, Any]] = []
    for i, prompt in enumerate(prompts):
        history += [{"role": "user", "content": prompt}, {"role": "assistant", "content": "…"}]
        text = banner_text(runtime, session, asked_from(runtime, session, history))
        if i + 1 < len(prompts):
            assert f"next recorded prompt: “{prompts[i + 1]}”" in text, text
        else:
            assert "that was the recording's last turn" in text
    # A message the recording does not answer does not move the replay on.
    off = [{"role": "user", "content": "something else"}, {"role": "assistant", "content": "…"}]
    assert asked_from(runtime, session, off + history[:2]) == 1


# -- example configs replay what fits them ---------------------------------------------------


@pytest.mark.parametrize("config", ["assistant_config.yaml", "examples/frieza.yaml"])
def test_each_shipped_config_without_a_key_replays_a_recording_that_answers_its_examples(config: str) -> None:
    """The prompts the replay page offers are answered by the recording it opens with; a
    config naming its own recording offers its own examples (Frieza's are Japanese)."""
    from streamchat.ui import _examples

    settings, _ = settings_from(["--config", str(ROOT / config)], env={})
    runtime = Runtime(settings)
    assert runtime.library is not None and runtime.recordings
    player = Player(runtime.library.load(runtime.recordings[0]))
    offered = _examples(runtime, runtime.recordings[0])
    assert offered and all(player.match(prompt, 0) is not None for prompt in offered)
    if settings.config.replay is not None:
        assert {normalize(e) for e in settings.config.ui.examples} == {normalize(p) for p in offered}


async def test_frieza_without_a_key_answers_its_examples_in_japanese() -> None:
    settings, _ = settings_from(["--config", str(ROOT / "examples" / "frieza.yaml")], env={})
    assert settings.replay_path == ROOT / "recordings" / "03-frieza-japanese.jsonl"
    runtime = Runtime(settings)
    session = runtime.new_session()
    history: list[dict[str, Any]] = []
    for example in settings.config.ui.examples:
        values = await run_turn(session, example, history)
        answer = values[-1] if isinstance(values[-1], str) else ""
        assert answer and "nothing in it answers" not in answer and any("\u3040" <= c <= "\u30ff" for c in answer), answer
        assert session.last_status == "completed"
        history += [{"role": "user", "content": example}, {"role": "assistant", "content": answer}]
    await runtime.shutdown()


def test_example_config_comment_matches_its_backend() -> None:
    text = (ROOT / "examples" / "frieza.yaml").read_text(encoding="utf-8")
    backend = next(line.split(":")[1].split("#")[0].strip() for line in text.splitlines() if line.startswith("backend:"))
    assert backend == "responses"
    # The first command in the comment runs the file as it is (no --backend that contradicts it).
    first = next(line for line in text.splitlines() if "python app.py" in line)
    assert "--backend" not in first or f"--backend {backend}" in first


def test_replay_key_is_relative_to_the_config_file(tmp_path: Path) -> None:
    from streamchat.config import load_config

    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "a.yaml").write_text("name: a\ninstructions: b\nmodel: c\nreplay: ../recs/x.jsonl\n", encoding="utf-8")
    assert load_config(folder / "a.yaml").replay == tmp_path / "recs" / "x.jsonl"
    with pytest.raises(RecordingError, match="no such file"):
        prepare(["--config", str(folder / "a.yaml")], env={})
