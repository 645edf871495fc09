"""Flags and environment variables → ``Settings``.

Every flag has an environment variable, for hosts that run ``python app.py`` bare
(Hugging Face Spaces take configuration as variables). A flag wins over its variable.

Light on purpose: nothing here imports Gradio or the `openai` SDK before the flags and
the config are checked, so ``--help`` and a bad value answer at once.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .config import ConfigError, load_config
from .defaults import MAX_GAP, READ_TIMEOUT
from .guard import GuardConfigError, parse_limits, parse_names

if TYPE_CHECKING:
    from .session import Mode, Settings

ROOT = Path(__file__).resolve().parent.parent


def _bundled(name: str) -> Path:
    """A file of the checkout (``python app.py``, an editable install), else the copy
    an installed wheel carries in ``streamchat/data/``."""
    here = ROOT / name
    return here if here.exists() else Path(__file__).resolve().parent / "data" / name


DEFAULT_CONFIG = _bundled("assistant_config.yaml")
DEFAULT_RECORDINGS = _bundled("recordings")
DEFAULT_SERVER = "api.openai.com"
"""Shown as the live server when ``OPENAI_BASE_URL`` is not set (the SDK's default)."""

RECORD_ON = ("1", "true", "yes", "on")
RECORD_OFF = ("", "0", "false", "no", "off", "none")
"""``--record`` / ``STREAMCHAT_RECORD`` values meaning on (the default folder) or off,
any case; anything else is a folder."""

ENV = {
    "config": "STREAMCHAT_CONFIG",
    "backend": "STREAMCHAT_BACKEND",
    "model": "STREAMCHAT_MODEL",
    "record": "STREAMCHAT_RECORD",
    "record_attachments": "STREAMCHAT_RECORD_ATTACHMENTS",
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
    parser.add_argument(
        "--record-attachments",
        action="store_true",
        default=None,
        help="with --record: keep the bytes of the files users attach in the recording (base64, within its size"
        " limits), so a replay shows their thumbnails; without it only each file's name, type, size and SHA-256",
    )
    parser.add_argument(
        "--replay",
        metavar="PATH",
        help="replay a recording file or folder instead of calling the API (default without a key: the config's"
        " `replay` recording, else recordings/)",
    )
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

    Raises ``ConfigError`` naming the flag or key for any bad value. ``args.replay_source``
    says what chose replay: ``--replay``, ``STREAMCHAT_REPLAY``, ``config`` or None.
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
    args.replay_source = None if replay is None else "--replay" if args.replay is not None else ENV["replay"]
    record = pick("record")
    if record is None and env.get(ENV["record"]) == "" and ENV["record"] in env:
        record = ""
    if record is not None and record.strip().lower() in RECORD_ON:
        record = str(DEFAULT_RECORDINGS)
    if record is not None and record.strip().lower() in RECORD_OFF:
        logging.getLogger("streamchat").info("Recording is off (%s=%r).", "--record" if args.record else ENV["record"], record)
        record = None
    mode: Mode = "live" if api_key and not replay else "replay"
    if mode == "replay" and replay is None and config.replay is not None:
        replay, args.replay_source = str(config.replay), "config"
    replay_path = Path(replay) if replay else (DEFAULT_RECORDINGS if mode == "replay" else None)
    speed = _number(pick("speed"), "--speed", 1.0)
    max_gap = _number(pick("max_gap"), "--max-gap", MAX_GAP, positive=True)
    read_timeout = _number(pick("read_timeout"), "--read-timeout", READ_TIMEOUT, positive=True)
    from .session import Settings  # the SDK loads only once the flags and the config are good

    settings = Settings(
        config=config,
        mode=mode,
        api_key=api_key,
        base_url=env.get("OPENAI_BASE_URL") or None,
        record_dir=Path(record) if record and mode == "live" else None,
        record_attachments=_flag(pick("record_attachments")),
        replay_path=replay_path,
        speed=speed,
        max_gap=max_gap,
        read_timeout=read_timeout,
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


def check_server_env(env: Mapping[str, str] | None = None) -> None:
    """Where Gradio will listen: a bad ``GRADIO_SERVER_PORT`` is one line, not a traceback."""
    env = os.environ if env is None else env
    port = env.get("GRADIO_SERVER_PORT")
    if port is None or port == "":
        return
    if not port.strip().isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"GRADIO_SERVER_PORT: expected a port number from 1 to 65535, got {port!r}")


def server_label(base_url: str | None) -> str:
    """``host:port`` (or ``host``) of the server a live app talks to, for people to read."""
    if not base_url:
        return DEFAULT_SERVER
    parts = urlsplit(base_url if "//" in base_url else f"//{base_url}")
    return parts.netloc.rpartition("@")[2] or base_url


def startup_line(settings: Settings, replay_source: str | None, recordings: int = 0) -> str:
    """One line for the console: replay or live, and why."""
    config = settings.config
    if settings.mode == "live":
        record = f"; recording to {settings.record_dir}/" if settings.record_dir else ""
        if record and settings.record_attachments:
            record += " with the bytes of attached files"
        return (
            f"live mode (OPENAI_API_KEY is set): {config.backend} backend at {server_label(settings.base_url)},"
            f" model {config.model}{record}"
        )
    why = {
        "--replay": "--replay was given",
        ENV["replay"]: f"{ENV['replay']} is set",
        "config": "no OPENAI_API_KEY is set; the config names its recording",
    }.get(replay_source or "", "no OPENAI_API_KEY is set")
    count = f"{recordings} recording{'' if recordings == 1 else 's'}"
    return f"replay mode ({why}): {count} from {settings.replay_path}; answers come from recordings, not the API"
