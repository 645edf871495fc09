"""Streaming assistant chat: `python app.py` serves it at http://127.0.0.1:7860.

With OPENAI_API_KEY set it talks to the live API; without one it replays the bundled
recordings. `python app.py --help` lists every flag and environment variable.
"""

from __future__ import annotations

import logging
import signal
import sys

from streamchat.config import ConfigError
from streamchat.options import settings_from
from streamchat.recording import RecordingError
from streamchat.session import Runtime
from streamchat.ui import CONCURRENCY_LIMIT, build_demo

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
for noisy in ("httpx", "httpx2"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

try:
    # Flags only when run as a program; an import (tests, Spaces) reads the environment.
    settings, args = settings_from(sys.argv[1:] if __name__ == "__main__" else [])
    runtime = Runtime(settings)
    runtime.check()
except (ConfigError, RecordingError) as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)

demo = build_demo(runtime)
demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT)

if __name__ == "__main__":
    if args.cli:
        from streamchat.cli import run_cli

        sys.exit(run_cli(runtime))
    runtime.run_outside("start")

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # hosts (Spaces, systemd) stop with SIGTERM: clean up as on Ctrl-C

    signal.signal(signal.SIGTERM, _terminate)
    try:
        # Gradio's queue runs at most `max_threads` events at once (default 40), whatever
        # the concurrency limits say: without this, stream 41 waits for one of 40 to end.
        demo.launch(max_threads=CONCURRENCY_LIMIT)
    finally:
        runtime.run_outside("shutdown")
