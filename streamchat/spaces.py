"""Hugging Face Spaces: optional persistence of recordings to a dataset repository, and
the feedback log that keeps visitors' votes when their chat is not recorded.

A Space's disk is wiped on restart. With ``STREAMCHAT_HF_DATASET=owner/name`` (and a
write token in the ``HF_TOKEN`` secret), the recordings a live Space writes are
committed to that dataset repository every ``STREAMCHAT_HF_EVERY`` minutes (default 5)
by ``huggingface_hub``'s ``CommitScheduler``. Recordings are append-only files and each
line is written under the scheduler's lock, so a commit never holds half a line.

``huggingface_hub`` is imported only when this is turned on: the app runs without it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .guard import describe, visitor_key
from .session import Runtime

log = logging.getLogger("streamchat")

ENV_DATASET = "STREAMCHAT_HF_DATASET"
ENV_EVERY = "STREAMCHAT_HF_EVERY"
PATH_IN_REPO = "recordings"
FEEDBACK_FILE = Path("feedback") / "feedback.jsonl"
"""Inside the recordings folder: a sub-folder, so replay never lists it as a recording."""
MAX_FEEDBACK_BYTES = 16 * 1024 * 1024
"""A feedback log larger than this takes no more votes (said once in the log)."""


def on_space(env: Mapping[str, str] | None = None) -> bool:
    """Running on a Hugging Face Space (which sets ``SPACE_ID``)."""
    return bool((os.environ if env is None else env).get("SPACE_ID"))


def start_dataset_sync(runtime: Runtime, env: Mapping[str, str] | None = None, **scheduler_kw: Any) -> Any | None:
    """Start committing ``runtime``'s recordings folder to the dataset named by
    ``STREAMCHAT_HF_DATASET``; returns the scheduler, or None when that is not set, the
    app does not record, or ``huggingface_hub`` is missing (said in the log)."""
    env = os.environ if env is None else env
    repo_id = (env.get(ENV_DATASET) or "").strip()
    folder = runtime.settings.record_dir
    if not repo_id:
        return None
    if folder is None or not runtime.live:
        log.warning("%s is set but this app records nothing (live mode and STREAMCHAT_RECORD needed)", ENV_DATASET)
        return None
    try:
        from huggingface_hub import CommitScheduler
    except ImportError:
        log.warning("%s is set but huggingface_hub is not installed: recordings stay local", ENV_DATASET)
        return None
    try:
        every = float(env.get(ENV_EVERY) or 5)
    except ValueError:
        every = 5.0
    scheduler = CommitScheduler(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=folder,
        path_in_repo=PATH_IN_REPO,
        every=max(every, 1.0),
        private=True,
        allow_patterns=["*.jsonl"],
        **scheduler_kw,
    )
    runtime.record_lock = scheduler.lock
    log.info("recordings in %s/ go to the dataset %s every %g min", folder.name, repo_id, every)
    return scheduler


class FeedbackLog:
    """Votes on answers that no recording holds, one JSON object a line, appended and
    flushed by any session of the process: the session's id (random, not the visitor),
    the turn's place in its chat, the vote, when, and the API and model that answered.
    No message text: a visitor who is not recorded leaves no words behind."""

    def __init__(self, path: Path, lock: contextlib.AbstractContextManager[Any] | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._outer = lock
        self._full = False

    def add(self, session: str, turn: int, value: str | None, **extra: Any) -> bool:
        line = {"kind": "feedback", "session": session, "turn": turn, "value": value}
        line["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = json.dumps({**line, **extra}, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock, self._outer or contextlib.nullcontext():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.exists() and self.path.stat().st_size > MAX_FEEDBACK_BYTES:
                    if not self._full:
                        log.warning("%s is over %d MiB: votes are no longer kept", self.path, MAX_FEEDBACK_BYTES >> 20)
                    self._full = True
                    return False
                with open(self.path, "a", encoding="utf-8") as file:
                    file.write(data)
            except OSError as exc:
                log.warning("could not keep a vote in %s: %s", self.path, exc.strerror or exc)
                return False
        return True


# -- a public Space: the banner, sign-in and who a visitor is --------------------------

SPACE_COPY = (
    "Want it private, on your own key? **Duplicate this Space** (button above), then add your "
    "`OPENAI_API_KEY` as a secret in the copy's settings."
)


def space_banner(runtime: Runtime, text: str) -> str:
    """The banner with this app's limits, and on a Space how to get a private copy."""
    settings = runtime.settings
    limits = describe(settings.rate_limits, settings.daily_requests) if runtime.live else ""
    if runtime.live and settings.max_output_tokens:
        limits = ", ".join(p for p in (limits, f"answers up to {settings.max_output_tokens} tokens") if p)
    if limits:
        text += f" · limits: {limits}"
    return f"{text}\n\n{SPACE_COPY}" if on_space() else text


def warn_if_unprotected(runtime: Runtime, env: Mapping[str, str] | None = None) -> None:
    """Say in the log when a live Space lets anyone spend its key without limits."""
    settings = runtime.settings
    limited = settings.rate_limits or settings.daily_requests or settings.allowed_users or settings.allowed_orgs
    if on_space(env) and runtime.live and not limited:
        log.warning(
            "this Space chats live with no limits: set STREAMCHAT_RATE_LIMIT, STREAMCHAT_DAILY_REQUESTS "
            "and STREAMCHAT_MAX_OUTPUT_TOKENS (see docs/deploy-spaces.md, public Space checklist)"
        )


def sign_in_offered(runtime: Runtime, env: Mapping[str, str] | None = None) -> bool:
    """A Sign-in button when only listed users may chat, or when the Space has OAuth
    (``hf_oauth: true`` gives it ``OAUTH_CLIENT_ID``): then limits count per user."""
    env = os.environ if env is None else env
    settings = runtime.settings
    return runtime.live and bool(settings.allowed_users or settings.allowed_orgs or env.get("OAUTH_CLIENT_ID"))


def signed_in(request: Any) -> dict[str, Any] | None:
    """The Hugging Face user signed in with Gradio's OAuth, from the session cookie of a
    ``gr.Request`` (Gradio keeps it as ``oauth_info``, with an expiry)."""
    scope = getattr(getattr(request, "request", None), "scope", None)
    session = scope.get("session") if isinstance(scope, dict) else None
    info = session.get("oauth_info") if isinstance(session, dict) else None
    if not isinstance(info, dict):
        return None
    expires = info.get("expires_at")
    if isinstance(expires, (int, float)) and expires < time.time():
        return None
    user = info.get("userinfo")
    return user if isinstance(user, dict) else None


def visitor_of(request: Any, profile: Mapping[str, Any] | None) -> str:
    """Who sent a ``gr.Request``: the signed-in user (or Gradio ``auth`` user), else its
    address: on a Space the first ``X-Forwarded-For`` hop, else the client's."""
    user = profile.get("preferred_username") if profile else getattr(request, "username", None)
    headers = getattr(request, "headers", None) or {}
    client = getattr(request, "client", None)
    return visitor_key(user, getattr(client, "host", None), headers.get("x-forwarded-for"), trust_forwarded=on_space())


def with_past_vote(value: Any, vote: str) -> list[dict[str, Any]]:
    """A replayed answer with the vote it got when it was recorded, as a line under it."""
    messages = [{"role": "assistant", "content": value}] if isinstance(value, str) else list(value)
    title = "👍 Liked when it was recorded" if vote == "like" else "👎 Disliked when it was recorded"
    return [*messages, {"role": "assistant", "content": "", "metadata": {"title": title, "status": "done"}}]
