"""The program: flags and environment → checked settings → the browser UI (or the
terminal chat). ``python app.py`` and the ``streamchat`` command both run ``main``.

Gradio is imported only when the UI is built, so ``--help`` and every start-up error
(a bad flag, config, port or replay input) answer at once, in one line, exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from .config import ConfigError
from .options import check_server_env, settings_from, startup_line
from .recording import RecordingError

if TYPE_CHECKING:
    import gradio as gr

    from .session import Runtime

log = logging.getLogger("streamchat")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Holder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _held_warnings() -> Iterator[list[logging.LogRecord]]:
    """Hold back what the app logs while it loads, to say it only once the start is good."""
    handler = _Holder()
    held = handler.records
    propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield held
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def prepare(argv: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[Runtime, argparse.Namespace]:
    """Everything up to the UI, checked: raises ``ConfigError`` or ``RecordingError``
    with the one line to show."""
    env = os.environ if env is None else env
    settings, args = settings_from(argv, env)
    check_server_env(env)
    from .session import Runtime

    with _held_warnings() as held:  # said only if the app starts: an error is one line
        runtime = Runtime(settings)
        runtime.check()
        if runtime.library is not None and not runtime.recordings and args.replay_source is not None:
            # Asked for a replay that has nothing to play: stop, as a missing path does.
            path, problems = runtime.library.root, runtime.library.problems
            why = problems[0] if problems else "no .jsonl recording in it" if path.is_dir() else "no recording in it"
            raise RecordingError(f"{path}: nothing to replay ({why})")
    for record in held:
        log.handle(record)
    log.info(startup_line(settings, args.replay_source, len(runtime.recordings)))
    return runtime, args


def _absent_matplotlib_fails_fast() -> None:
    """Gradio tries ``import matplotlib`` twice per streamed update (a plot-backend
    guard); when it is not installed every try searches ``sys.path`` again, a tenth of
    the app's CPU under a crowd (issue 16). A ``None`` entry makes that import fail at
    once, as it would anyway."""
    import importlib.util

    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]


def _gradio_signatures_cached() -> None:
    """Gradio builds every block's config from ``inspect.signature(cls.__init__)``, anew
    each time: for every block of the page when a visitor's session starts, and for the
    chat's state on every streamed update. Half of a new session's state is that
    (issue 16: a crowd's start-up). A class's signature does not change, so
    ``gradio.blocks`` gets an ``inspect`` whose ``signature`` remembers them (keyed
    weakly: nothing is kept alive by the cache)."""
    import inspect
    import types
    import weakref

    import gradio.blocks

    if getattr(gradio.blocks, "inspect", None) is not inspect:
        return  # done already (or a Gradio that no longer uses it: nothing to speed up)
    known: weakref.WeakKeyDictionary[object, inspect.Signature] = weakref.WeakKeyDictionary()

    def signature(obj: object, **kwargs: object) -> inspect.Signature:
        if kwargs:
            return inspect.signature(obj, **kwargs)  # type: ignore[arg-type]
        try:
            return known[obj]
        except (KeyError, TypeError):  # not seen, or not weakly referable
            found = inspect.signature(obj)  # type: ignore[arg-type]
        with contextlib.suppress(TypeError):
            known[obj] = found
        return found

    shim = types.ModuleType("inspect")
    shim.__dict__.update(vars(inspect))
    shim.signature = signature  # type: ignore[attr-defined]
    gradio.blocks.inspect = shim


def build(runtime: Runtime) -> gr.Blocks:
    """The Gradio app, queued (the first and only place Gradio is imported)."""
    _absent_matplotlib_fails_fast()
    _gradio_signatures_cached()
    from .ui import CONCURRENCY_LIMIT, build_demo

    demo = build_demo(runtime)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT)
    return demo


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def module_app() -> tuple[Runtime, gr.Blocks]:
    """The app for ``import app`` (tests, hosts that import ``demo``): configured from the
    environment only; a bad setting exits 2 with one line, as ``python app.py`` does."""
    setup_logging()
    try:
        runtime, _ = prepare([])
    except (ConfigError, RecordingError) as exc:
        sys.exit(_fail(exc))
    return runtime, build(runtime)


def main(argv: Sequence[str] | None = None) -> int:
    """``python app.py`` / ``streamchat``: serve the UI until Ctrl-C or SIGTERM."""
    setup_logging()
    try:
        runtime, args = prepare(sys.argv[1:] if argv is None else argv)
    except (ConfigError, RecordingError) as exc:
        return _fail(exc)
    if args.cli:
        from .cli import run_cli

        return run_cli(runtime)
    demo = build(runtime)
    from .ui import CONCURRENCY_LIMIT, CSS

    runtime.run_outside("start")

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # hosts (Spaces, systemd) stop with SIGTERM: clean up as on Ctrl-C

    signal.signal(signal.SIGTERM, _terminate)
    try:
        # Gradio's queue runs at most `max_threads` events at once (default 40), whatever
        # the concurrency limits say: without this, stream 41 waits for one of 40 to end.
        demo.launch(max_threads=CONCURRENCY_LIMIT, css=CSS)
    finally:
        runtime.run_outside("shutdown")
    return 0
