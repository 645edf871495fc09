"""The normalized events: the only vocabulary that crosses from a backend to the UI.

Every backend adapter turns its provider's raw stream events into `StreamEvent`s; the
transcript state, the UI and the CLI know nothing else. Keeping this set small and
provider-neutral is what lets one rendering path serve three APIs, live and replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "text",
    "text_final",
    "tool_call",
    "tool_args",
    "tool_done",
    "tool_output",
    "citation",
    "file",
    "reasoning",
    "notice",
    "waiting",
    "error",
    "turn_end",
]

TurnStatus = Literal["completed", "incomplete", "failed", "cancelled", "interrupted"]

TERMINAL_STATUSES: tuple[TurnStatus, ...] = (
    "completed",
    "incomplete",
    "failed",
    "cancelled",
    "interrupted",
)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One normalized event of an assistant turn."""

    kind: EventKind
    """What happened: a text delta, a tool-call step, a citation, a notice, an error or
    the end of the turn."""

    text: str = ""
    """The payload text: the answer delta (`text`; with ``extra["refusal"]`` it is the
    model's refusal), the provider's final text of the part just streamed (`text_final`,
    which replaces what the deltas showed for it, ``extra["shown"]``), the arguments delta (`tool_args`),
    the tool's output (`tool_output`), the summary delta (`reasoning`), the citation's
    label (`citation`), or a one-line human message (`notice`, `error`, `turn_end`, and
    `waiting`: a live status before the first token that the answer replaces; empty
    text clears it)."""

    call_id: str | None = None
    """Identifies the tool call that `tool_call`, `tool_args`, `tool_done` and
    `tool_output` belong to, so parallel calls never mix."""

    name: str | None = None
    """The tool's name on `tool_call` (a function name, or `code_interpreter`,
    `file_search`, `web_search` for built-in tools)."""

    status: TurnStatus | None = None
    """How the turn ended; set only on `turn_end`."""

    url: str | None = None
    """Where a citation points (a link, or `file:<name>` for a file), if known; for a
    `file` (one a tool produced: a plot, a CSV), the local path of its downloaded copy,
    with its name in ``text`` and its type in ``extra["mime"]``."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Small provider-neutral details a view may use (e.g. `{"server": True}` for a
    tool the provider ran itself, `{"language": "python"}` for interpreter code)."""


def text(delta: str) -> StreamEvent:
    return StreamEvent("text", delta)


def refusal(delta: str) -> StreamEvent:
    return StreamEvent("text", delta, extra={"refusal": True})


def waiting(message: str) -> StreamEvent:
    return StreamEvent("waiting", message)


def notice(message: str) -> StreamEvent:
    return StreamEvent("notice", message)


def error(message: str) -> StreamEvent:
    return StreamEvent("error", message)


def turn_end(status: TurnStatus, message: str = "") -> StreamEvent:
    return StreamEvent("turn_end", message, status=status)
