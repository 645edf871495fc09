"""Flags and environment variables → ``Settings``.

Every flag has an environment variable, for hosts that run ``python app.py`` bare
(Hugging Face Spaces take configuration as variables). A flag wins over its variable.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .config import ConfigError, load_config
from .replay import MAX_GAP
from .session import READ_TIMEOUT, Mode, Settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "assistant_config.yaml"
DEFAULT_RECORDINGS = ROOT / "recordings"

RECORD_ON = ("1", "true", "yes", "on")
RECORD_OFF = ("", "0", "false", "no", "off", "none")
"""``--record`` / ``STREAMCHAT_RECORD`` values meaning on (the default folder) or off,
any case; anything else is a folder."""

ENV = {
    "config": "STREAMCHAT_CONFIG",
    "backend": "STREAMCHAT_BACKEND",
    "model": "STREAMCHAT_MODEL",
    "record": "STREAMCHAT_RECORD",
    "replay": "STREAMCHAT_REPLAY",
    "speed": "STREAMCHAT_SPEED",
    "max_gap": "STREAMCHAT_MAX_GAP",
    "read_timeout": "STREAMCHAT_READ_TIMEOUT",
}

_EPILOG = """\
environment:
  OPENAI_API_KEY            live mode; without it the app replays recordings
  OPENAI_BASE_URL           any OpenAI-compatible server (vLLM, Ollama, llama.cpp)
  GRADIO_SERVER_NAME/PORT   where the UI listens (default 127.0.0.1:7860)
""" + "".join(f"  {var:<25} same as --{name.replace('_', '-')}\n" for name, var in ENV.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Stream an assistant's reply into a Gradio chat; record and replay provider event streams.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="PATH", help="assistant config (default: assistant_config.yaml)")
    parser.add_argument("--backend", choices=("responses", "assistants", "chat"), help="API to speak (default: from the config)")
    parser.add_argument("--model", metavar="NAME", help="model name (default: from the config)")
    parser.add_argument(
        "--record",
        nargs="?",
        const=str(DEFAULT_RECORDINGS),
        metavar="DIR",
        help="record every live turn to a new JSON Lines file in DIR (default DIR: recordings/)",
    )
    parser.add_argument("--replay", metavar="PATH", help="replay a recording file or folder instead of calling the API")
    parser.add_argument(
        "--speed", type=float, metavar="X", help="replay speed: 1 = as recorded, 0 = as fast as possible (default 1)"
    )
    parser.add_argument("--max-gap", type=float, metavar="S", help=f"replay: cap silences at S seconds (default {MAX_GAP:g})")
    parser.add_argument(
        "--read-timeout",
        type=float,
        metavar="S",
        help=f"live: give up on a stream after S seconds without a byte (default {READ_TIMEOUT:g})",
    )
    parser.add_argument("--cli", action="store_true", help="chat in the terminal instead of the browser (q quits)")
    return parser


def _number(value: str | float | None, name: str, default: float, *, positive: bool = False) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if math.isnan(number) or number < 0 or (positive and number == 0) or math.isinf(number):
        raise ConfigError(f"{name}: expected a {'positive' if positive else 'non-negative'} number, got {value!r}")
    return number


def settings_from(argv: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """Parse flags (falling back on environment variables) into settings.

    Raises ``ConfigError`` naming the flag or key for any bad value.
    """
    env = os.environ if env is None else env
    args = build_parser().parse_args(list(argv))

    def pick(name: str) -> str | None:
        value = getattr(args, name)
        return value if value is not None else (env.get(ENV[name]) or None)

    config = load_config(pick("config") or DEFAULT_CONFIG)
    config = config.with_overrides(backend=pick("backend"), model=pick("model"))
    api_key = env.get("OPENAI_API_KEY") or None
    replay = pick("replay")
    record = pick("record")
    if record is None and env.get(ENV["record"]) == "" and ENV["record"] in env:
        record = ""
    if record is not None and record.strip().lower() in RECORD_ON:
        record = str(DEFAULT_RECORDINGS)
    if record is not None and record.strip().lower() in RECORD_OFF:
        logging.getLogger("streamchat").info("Recording is off (%s=%r).", "--record" if args.record else ENV["record"], record)
        record = None
    mode: Mode = "live" if api_key and not replay else "replay"
    replay_path = Path(replay) if replay else (DEFAULT_RECORDINGS if mode == "replay" else None)
    settings = Settings(
        config=config,
        mode=mode,
        api_key=api_key,
        base_url=env.get("OPENAI_BASE_URL") or None,
        record_dir=Path(record) if record and mode == "live" else None,
        replay_path=replay_path,
        speed=_number(pick("speed"), "--speed", 1.0),
        max_gap=_number(pick("max_gap"), "--max-gap", MAX_GAP, positive=True),
        read_timeout=_number(pick("read_timeout"), "--read-timeout", READ_TIMEOUT, positive=True),
    )
    return settings, args
