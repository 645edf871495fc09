"""Flags and environment variables → ``Settings``.

Every flag has an environment variable, for hosts that run ``python app.py`` bare
(Hugging Face Spaces take configuration as variables). A flag wins over its variable.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from .config import ConfigError, load_config
from .guard import GuardConfigError, parse_limits, parse_names
from .replay import MAX_GAP
from .session import READ_TIMEOUT, Mode, Settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "assistant_config.yaml"
DEFAULT_RECORDINGS = ROOT / "recordings"

ENV = {
    "config": "STREAMCHAT_CONFIG",
    "backend": "STREAMCHAT_BACKEND",
    "model": "STREAMCHAT_MODEL",
    "record": "STREAMCHAT_RECORD",
    "replay": "STREAMCHAT_REPLAY",
    "speed": "STREAMCHAT_SPEED",
    "max_gap": "STREAMCHAT_MAX_GAP",
    "read_timeout": "STREAMCHAT_READ_TIMEOUT",
    "autoplay": "STREAMCHAT_AUTOPLAY",
    "no_typing": "STREAMCHAT_NO_TYPING",
}

GUARD_ENV = {
    "max_output_tokens": "STREAMCHAT_MAX_OUTPUT_TOKENS",
    "rate_limit": "STREAMCHAT_RATE_LIMIT",
    "daily_requests": "STREAMCHAT_DAILY_REQUESTS",
    "allowed_users": "STREAMCHAT_ALLOWED_USERS",
    "allowed_orgs": "STREAMCHAT_ALLOWED_ORGS",
}
"""Variables only (for a public Space; docs/deploy-spaces.md)."""

_EPILOG = """\
environment:
  OPENAI_API_KEY            live mode; without it the app replays recordings
  OPENAI_BASE_URL           any OpenAI-compatible server (vLLM, Ollama, llama.cpp)
  GRADIO_SERVER_NAME/PORT   where the UI listens (default 127.0.0.1:7860)
  STREAMCHAT_MAX_OUTPUT_TOKENS  cap every answer at this many tokens
  STREAMCHAT_RATE_LIMIT     per-visitor limits, e.g. 10/minute,100/day
  STREAMCHAT_DAILY_REQUESTS messages a day for the whole app
  STREAMCHAT_ALLOWED_USERS/ORGS  only these Hugging Face users/orgs may chat
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
    demo = parser.add_argument_group("demo mode (replay a whole recording hands-free)")
    demo.add_argument("--autoplay", action="store_true", default=None, help="play the recording when the page opens")
    demo.add_argument("--no-typing", action="store_true", default=None, help="show each prompt at once instead of typing it")
    demo.add_argument("--play", action="store_true", help="with --cli: play the recording in the terminal, then quit")
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


def _flag(value: str | bool | None) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"))


def _count(value: str | None, name: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {value!r}") from None
    if number < 1:
        raise ConfigError(f"{name}: expected a positive number, got {value!r}")
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
    if record is not None and record.lower() in ("1", "true", "yes", "on"):
        record = str(DEFAULT_RECORDINGS)
    if record is not None and record.lower() in ("0", "false", "no", "off"):
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
        max_output_tokens=_count(env.get(GUARD_ENV["max_output_tokens"]), GUARD_ENV["max_output_tokens"]),
        daily_requests=_count(env.get(GUARD_ENV["daily_requests"]), GUARD_ENV["daily_requests"]),
        allowed_users=parse_names(env.get(GUARD_ENV["allowed_users"])),
        allowed_orgs=parse_names(env.get(GUARD_ENV["allowed_orgs"])),
        autoplay=_flag(pick("autoplay")),
        typing=not _flag(pick("no_typing")),
        play=bool(args.play),
    )
    try:
        settings = replace(settings, rate_limits=parse_limits(env.get(GUARD_ENV["rate_limit"])))
    except GuardConfigError as exc:
        raise ConfigError(f"{GUARD_ENV['rate_limit']}: {exc}") from None
    return settings, args
