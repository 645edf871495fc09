"""Serve recordings as an OpenAI-compatible endpoint on 127.0.0.1.

    python -m streamchat.replay_server recordings/ [--port N] [--speed X] [--max-gap S] [--max-body BYTES]
    python -m streamchat.replay_server DIR --record [--upstream URL]   (the recording proxy)

Any OpenAI client, in any language, can then stream recorded answers offline: point its
base URL at the printed address (any API key works). The Responses, Assistants and Chat
routes are those of the fake API (``replayapi.ReplayAPI``), framed as OpenAI frames them
and paced by the recorded timing. With a folder, every recording is served at once: a
request gets the first recording whose prompts match its user message.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .recording import RecordingError
from .replay import MAX_GAP, Library, Player, request_files, searchable_files
from .replayapi import ReplayAPI, Script, TurnRequest
from .serve import RunningServer, asgi_app, serve_in_thread
from .validate import MAX_BODY

DEFAULT_PORT = 8765


class UnionSource:
    """A ``StreamSource`` over several recordings: among those of the request's API
    (the route it came in on), the first whose prompts match its user message answers
    it; an unmatched message gets a 404 that lists what can be asked on that route."""

    def __init__(self, players: Sequence[Player]) -> None:
        self.players = list(players)

    def prompts(self, api: str) -> list[str]:
        return list(dict.fromkeys(p for player in self.players if player.recording.api == api for p in player.recording.prompts))

    def prompt_lines(self, api: str) -> list[str]:
        """``- prompt (with a.png)``: the prompts recorded for ``api`` with their files."""
        return list(
            dict.fromkeys(line for player in self.players if player.recording.api == api for line in player.prompt_lines())
        )

    def __call__(self, request: TurnRequest) -> Script:
        files = request_files(request)
        for player in self.players:
            searchable = searchable_files(request)
            if player.recording.api == request.api and player.match(
                request.user, request.position, attachments=files, searchable=searchable
            ):
                return player(request)
        asked = request.user.strip()[:200]
        prompts = self.prompt_lines(request.api)
        if prompts:
            listed = "\n".join(prompts)
            with_files = f" with {len(files)} file{'' if len(files) == 1 else 's'}" if files else ""
            message = f"No recording answers “{asked}”{with_files} on the {request.api} API. The recorded prompts are:\n{listed}"
        else:
            apis = ", ".join(sorted({p.recording.api for p in self.players}))
            message = f"No recording here uses the {request.api} API (recorded: {apis})."
        return Script(status=404, error={"message": message, "type": "invalid_request_error", "code": "no_recorded_turn"})

    def file_content(self, file_id: str) -> tuple[str, bytes] | None:
        """A file a tool produced in any of the recordings (see ``Player.file_content``)."""
        for player in self.players:
            found = player.file_content(file_id)
            if found is not None:
                return found
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streamchat.replay_server",
        description=(
            "Serve recordings as an OpenAI-compatible endpoint on 127.0.0.1 (Responses, Assistants and "
            "Chat Completions routes, streaming only), paced by their recorded timing. Point any OpenAI "
            "client's base URL at the printed address; any API key is accepted."
        ),
    )
    parser.add_argument("path", metavar="PATH", help="a recording file, or a folder of them (all served at once)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 = any free port)"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, metavar="X", help="replay speed: 1 = as recorded, 0 = as fast as possible (default 1)"
    )
    parser.add_argument(
        "--max-gap", type=float, default=MAX_GAP, metavar="S", help=f"cap recorded silences at S seconds (default {MAX_GAP:g})"
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="record instead of replaying: forward every request to --upstream, stream each answer back as it "
        "arrives, and write one recording per conversation in PATH (a folder)",
    )
    parser.add_argument(
        "--upstream",
        metavar="URL",
        default=None,
        help="with --record: the OpenAI-compatible base URL to forward to (default $OPENAI_BASE_URL, else the OpenAI API); "
        "$OPENAI_API_KEY, when set, replaces the key clients send",
    )
    parser.add_argument(
        "--max-body",
        type=int,
        default=MAX_BODY,
        metavar="BYTES",
        help=f"refuse request bodies larger than this with a 413 (default {MAX_BODY})",
    )
    return parser


def record(args: argparse.Namespace) -> int:
    """``--record``: the recording proxy (streamchat.proxy) on 127.0.0.1 until stopped."""
    import os
    import signal

    from .proxy import Proxy, Recorder, serve_app, upstream_from_env

    folder = Path(args.path)
    if folder.exists() and not folder.is_dir():
        print(f"error: {folder}: --record writes a folder of recordings", file=sys.stderr)
        return 2
    upstream = args.upstream or upstream_from_env()
    proxy = Proxy(upstream, Recorder(folder), api_key=os.environ.get("OPENAI_API_KEY"))
    try:
        running = serve_app(proxy, port=args.port)
    except (OSError, RuntimeError) as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"Recording to {folder}/ what {upstream} streams", flush=True)
    print(running.url, flush=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM closes the recordings as Ctrl-C does

    signal.signal(signal.SIGTERM, stop)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()  # lifespan shutdown: every recording is closed
    return 0


def make_core(source: UnionSource, speed: float) -> ReplayAPI:
    """The request handler the server uses: its request log is off (nothing reads it,
    and a long-running server must not keep every body)."""
    core = ReplayAPI(source, speed=speed)
    core.log = collections.deque(maxlen=0)
    return core


def serve(core: ReplayAPI, *, port: int = 0, max_body: int = MAX_BODY) -> RunningServer:
    """Serve ``core`` on 127.0.0.1: bodies validated before it sees them (at most
    ``max_body`` bytes), keys redacted from every answer."""
    return serve_in_thread(core, port=port, app=asgi_app(core, max_body=max_body, redact_output=True))


def load_source(path: Path, max_gap: float = MAX_GAP) -> tuple[UnionSource, list[str]]:
    """The source serving every playable recording under ``path``, and the problems
    met on the way (recordings skipped, lines damaged)."""
    library = Library(path)
    names = library.playable()
    players = [Player(library.load(name), max_gap=max_gap) for name in names]
    problems = list(library.problems)
    for name in names:
        problems += [f"{name}: {p}" for p in library.load(name).problems]
    return UnionSource(players), problems


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.speed < 0 or args.max_gap <= 0 or not 0 <= args.port < 65536 or args.max_body < 1:
        print("error: --speed must be >= 0, --max-gap > 0, --max-body >= 1 and --port in 0..65535", file=sys.stderr)
        return 2
    if args.record:
        return record(args)
    try:
        source, problems = load_source(Path(args.path), args.max_gap)
    except RecordingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not source.players:
        print(f"error: {args.path}: no playable recording", file=sys.stderr)
        return 2
    try:
        running = serve(make_core(source, args.speed), port=args.port, max_body=args.max_body)
    except (OSError, RuntimeError) as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(player.recording.name for player in source.players)
    print(f"Replaying {len(source.players)} recording(s) ({names}) at speed {args.speed:g}", flush=True)
    print(running.url, flush=True)
    try:
        threading.Event().wait()  # until Ctrl-C or a signal ends the process
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
