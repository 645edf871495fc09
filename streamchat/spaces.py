"""Hugging Face Spaces: optional persistence of recordings to a dataset repository.

A Space's disk is wiped on restart. With ``STREAMCHAT_HF_DATASET=owner/name`` (and a
write token in the ``HF_TOKEN`` secret), the recordings a live Space writes are
committed to that dataset repository every ``STREAMCHAT_HF_EVERY`` minutes (default 5)
by ``huggingface_hub``'s ``CommitScheduler``. Recordings are append-only files and each
line is written under the scheduler's lock, so a commit never holds half a line.

``huggingface_hub`` is imported only when this is turned on: the app runs without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from .session import Runtime

log = logging.getLogger("streamchat")

ENV_DATASET = "STREAMCHAT_HF_DATASET"
ENV_EVERY = "STREAMCHAT_HF_EVERY"
PATH_IN_REPO = "recordings"


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
