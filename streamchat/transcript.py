"""Normalized events in, chat messages out. Pure: no I/O, no Gradio, no openai.

Messages are plain dicts in Gradio's messages format (``role``, ``content``, optional
``metadata``), so the UI yields them as they are and the CLI can read them too.

``handle_event`` is cheap (it appends to lists); ``snapshot`` builds fresh dicts. They
are apart because the UI takes a snapshot only every ~50 ms: building one per token
would make long replies quadratic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .events import StreamEvent, TurnStatus

STATUS_LINES: dict[str, str] = {
    "cancelled": "⏹ Stopped: the answer above is incomplete.",
    "interrupted": "⚠️ Interrupted: the stream ended before the answer finished.",
    "incomplete": "⚠️ Incomplete: the answer was cut short.",
    "failed": "❌ The request failed.",
}
EMPTY_LINE = "ℹ️ The model returned an empty answer."
REFUSAL_LINE = "🚫 Refusal: the model declined to answer; the text above is its refusal."


SERVER_TOOL_TITLES: dict[str, tuple[str, str]] = {
    # built-in tool: (title while it runs, title once done)
    "code_interpreter": ("🐍 Running code", "🐍 Ran code"),
    "file_search": ("🔎 Searching files", "🔎 Searched files"),
    "web_search": ("🌐 Searching the web", "🌐 Searched the web"),
}


def tool_titles(name: str, server: bool) -> tuple[str, str]:
    """A tool bubble's title while the call runs and once it is done."""
    if server:
        return SERVER_TOOL_TITLES.get(name, (f"⚙️ Running {name}", f"⚙️ Ran {name}"))
    return f"🛠️ Using tool {name}", f"🛠️ Used tool {name}"


@dataclass
class _Bubble:
    kind: str  # answer | tool | thinking | status | waiting | file
    parts: list[str] = field(default_factory=list)
    title: str = ""
    status: str = ""
    call_id: str = ""
    name: str = ""
    lang: str = "json"
    server: bool = False
    done_title: str = ""
    output: list[list[str]] = field(default_factory=list)
    """The result as ``[format, text]`` segments: ``text``/``logs`` (shown in a code
    block), ``image`` (a URL, shown as an image) or ``markdown`` (shown as it is)."""
    started: float | None = None
    duration: float | None = None

    def joined(self, parts: list[str]) -> str:
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""


class Transcript:
    """The assistant's side of one turn, built from normalized events."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._bubbles: list[_Bubble] = []
        self._tools: dict[str, _Bubble] = {}
        self._sources: list[tuple[str, str]] = []
        self.status: TurnStatus | None = None
        self._errors: list[str] = []
        self.refused = False
        """The answer (or part of it) is the model's refusal."""
        self.started = False
        """Any event has arrived (a waiting line included)."""
        self.repaired = 0
        """Answer parts replaced by the provider's final text (damaged deltas)."""

    # -- events -----------------------------------------------------------------

    def handle_event(self, event: StreamEvent) -> None:
        kind = event.kind
        self.started = True
        if kind == "waiting":
            self._waiting(event.text)
            return
        self._waiting("")  # anything else the stream brings replaces the waiting line
        if event.extra.get("refusal"):
            self.refused = True
        if kind == "text":
            if event.text:
                self._answer().parts.append(event.text)
        elif kind == "text_final":
            self._replace(str(event.extra.get("shown", "")), event.text)
        elif kind == "reasoning":
            self._thinking().parts.append(event.text)
        elif kind == "tool_call":
            self._tool_call(event)
        elif kind == "tool_args":
            self._tool(event).parts.append(event.text)
        elif kind == "tool_done":
            bubble = self._tool(event)
            if event.text and not bubble.parts:
                bubble.parts.append(event.text)
            if bubble.server:  # a local function stays pending until its output is in
                self._close_tool(bubble)
        elif kind == "tool_output":
            bubble = self._tool(event)
            _add_output(bubble, str(event.extra.get("format") or "text"), event.text)
            if not bubble.server:  # a built-in tool may send more; its tool_done closes it
                self._close_tool(bubble)
        elif kind == "citation":
            self._cite(event)
        elif kind == "file":
            self._file(event)
        elif kind == "notice":
            self._status_bubble(f"ℹ️ {event.text}")
        elif kind == "error":
            self._errors.append(event.text)
            self._status_bubble(f"❌ {event.text}")
        elif kind == "turn_end":
            self._end(event)

    def _waiting(self, line: str) -> None:
        """Show (or, with no text, clear) the live status line before the first token."""
        self._bubbles = [b for b in self._bubbles if b.kind != "waiting"]
        if line:
            self._bubbles.append(_Bubble("waiting", title=f"⏳ {line}", status="pending"))

    def _replace(self, shown: str, final: str) -> None:
        """Put the provider's final text of a part in place of what its deltas showed."""
        answer = self._answer()
        text = answer.joined(answer.parts)
        if shown and text.endswith(shown):
            text = text[: len(text) - len(shown)] + final
        elif shown and shown in text:
            at = text.rindex(shown)
            text = text[:at] + final + text[at + len(shown) :]
        elif not shown:
            text += final
        else:  # what the deltas showed cannot be found (citations inside it): said, not guessed
            self._status_bubble("⚠️ Part of the answer was damaged in transit; the text above may differ from the model's.")
            return
        answer.parts[:] = [text]
        self.repaired += 1

    def _answer(self) -> _Bubble:
        self._settle_thinking()
        # Text after a notice goes on in the answer above it: a skipped-event notice
        # must not cut the answer in two.
        for bubble in reversed(self._bubbles):
            if bubble.kind == "answer":
                return bubble
            if bubble.kind != "status":
                break
        self._bubbles.append(_Bubble("answer"))
        return self._bubbles[-1]

    def _thinking(self) -> _Bubble:
        if not self._bubbles or self._bubbles[-1].kind != "thinking":
            self._bubbles.append(_Bubble("thinking", title="💭 Thinking", status="pending", started=self._now()))
        return self._bubbles[-1]

    def _settle_thinking(self) -> None:
        for bubble in self._bubbles:
            if bubble.kind == "thinking" and bubble.status == "pending":
                bubble.status = "done"
                bubble.title = "💭 Thought"
                bubble.duration = self._since(bubble.started)

    def _tool_call(self, event: StreamEvent) -> None:
        self._settle_thinking()
        name = event.name or "tool"
        server = bool(event.extra.get("server"))
        title, done_title = tool_titles(name, server)
        earlier = sum(1 for b in self._bubbles if b.kind == "tool" and b.name == name)
        if earlier:  # parallel or repeated calls of one tool: told apart by number
            title, done_title = f"{title} #{earlier + 1}", f"{done_title} #{earlier + 1}"
        bubble = _Bubble(
            "tool",
            title=title,
            done_title=done_title,
            status="pending",
            call_id=event.call_id or "",
            name=name,
            lang="python" if name == "code_interpreter" else ("text" if server else "json"),
            server=server,
            started=self._now(),
        )
        self._bubbles.append(bubble)
        self._tools[bubble.call_id] = bubble

    def _tool(self, event: StreamEvent) -> _Bubble:
        bubble = self._tools.get(event.call_id or "")
        if bubble is None:  # an event for a call whose start we never saw
            self._tool_call(StreamEvent("tool_call", call_id=event.call_id, name=event.name))
            bubble = self._tools[event.call_id or ""]
        return bubble

    def _close_tool(self, bubble: _Bubble) -> None:
        if bubble.status == "done":
            return
        bubble.status = "done"
        bubble.title = bubble.done_title or bubble.title
        bubble.duration = self._since(bubble.started)

    def _cite(self, event: StreamEvent) -> None:
        source = (event.text, event.url or "")
        if source not in self._sources:
            self._sources.append(source)
        mark = f"[{self._sources.index(source) + 1}]"
        answer = self._answer()
        back = event.extra.get("back") or 0
        text = answer.joined(answer.parts) if back else ""
        if isinstance(back, int) and 0 < back <= len(text):
            answer.parts[:] = [text[: len(text) - back] + mark + text[len(text) - back :]]
        else:
            answer.parts.append(mark)

    def _file(self, event: StreamEvent) -> None:
        """A file a tool produced, downloaded to ``event.url``: a message of its own, below
        the tool's bubble (text after it starts a new answer bubble below it)."""
        if not event.url:
            return
        self._settle_thinking()
        mime = str(event.extra.get("mime") or "application/octet-stream")
        self._bubbles.append(_Bubble("file", parts=[event.url], name=event.text or event.url.rsplit("/", 1)[-1], title=mime))

    def _status_bubble(self, line: str) -> None:
        self._settle_thinking()
        self._bubbles.append(_Bubble("status", title=line, status="done"))

    def _end(self, event: StreamEvent) -> None:
        status = event.status or "interrupted"
        self.status = status
        self._settle_thinking()
        for bubble in self._tools.values():
            if bubble.status == "pending" and status != "completed":
                bubble.title = f"{bubble.title} (did not finish)"
                bubble.status = "done"
        if status == "completed":
            if self.refused:
                self._status_bubble(REFUSAL_LINE)
            elif not self.text and not any(b.kind == "status" for b in self._bubbles):
                self._status_bubble(EMPTY_LINE)
            return
        if status == "failed" and self._errors and (not event.text or event.text in self._errors):
            return  # the error bubble already says it
        line = STATUS_LINES[status]
        if event.text and status != "cancelled":
            head = line.split(":")[0]
            line = f"{head}: {event.text}" if status != "failed" else f"❌ {event.text}"
        self._status_bubble(line)

    # -- time -------------------------------------------------------------------

    def _now(self) -> float | None:
        return self._clock() if self._clock else None

    def _since(self, started: float | None) -> float | None:
        now = self._now()
        return None if now is None or started is None else round(now - started, 2)

    # -- output -----------------------------------------------------------------

    @property
    def text(self) -> str:
        """The answer's text so far (all answer bubbles, without footnotes)."""
        return "".join(b.joined(b.parts) for b in self._bubbles if b.kind == "answer")

    def snapshot(self) -> list[dict[str, Any]]:
        """The assistant's messages now, as fresh dicts (never shared with an earlier
        snapshot: Gradio diffs consecutive values)."""
        out: list[dict[str, Any]] = []
        last_answer = max((i for i, b in enumerate(self._bubbles) if b.kind == "answer"), default=-1)
        for i, bubble in enumerate(self._bubbles):
            content = bubble.joined(bubble.parts)
            if bubble.kind == "answer":
                if i == last_answer and self._sources:
                    content += _footnotes(self._sources)
                out.append({"role": "assistant", "content": content})
                continue
            if bubble.kind == "file":
                out.append({"role": "assistant", "content": file_content(content, bubble.name, bubble.title)})
                continue
            if bubble.kind == "tool":
                content = _tool_content(bubble, content)
            metadata: dict[str, Any] = {"title": bubble.title, "status": bubble.status}
            if bubble.call_id:
                metadata["id"] = bubble.call_id
            if bubble.duration is not None:
                metadata["duration"] = bubble.duration
            out.append({"role": "assistant", "content": content, "metadata": metadata})
        return out

    def value(self) -> str | list[dict[str, Any]]:
        """What the chat function yields: the plain text when the turn is one answer
        bubble (what API clients expect), else the list of messages."""
        messages = self.snapshot()
        if len(messages) == 1 and "metadata" not in messages[0] and isinstance(messages[0]["content"], str):
            return str(messages[0]["content"])
        if not messages:
            return ""
        return messages


def file_content(path: str, name: str, mime: str) -> dict[str, Any]:
    """A file as Gradio 6's chat message content: the chatbot shows an image inline and
    any other file as a link to download it (named ``name``)."""
    return {"type": "file", "file": {"path": path, "orig_name": name, "mime_type": mime}}


def _footnotes(sources: list[tuple[str, str]]) -> str:
    lines = []
    for n, (label, url) in enumerate(sources, 1):
        if url.startswith(("http://", "https://")):
            lines.append(f"{n}. [{label}]({url})")
        else:
            lines.append(f"{n}. {label}")
    return "\n\n**Sources**\n" + "\n".join(lines)


def _fence(text: str) -> str:
    """A code fence longer than any backtick run in ``text``, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    return "`" * (longest + 1)


def _add_output(bubble: _Bubble, fmt: str, text: str) -> None:
    if fmt not in ("image", "markdown"):
        fmt = "text"  # text, logs, or a format this view does not know
    if fmt == "text" and bubble.output and bubble.output[-1][0] == "text":
        bubble.output[-1][1] += text  # logs stream in pieces: one block
    else:
        bubble.output.append([fmt, text])


def _tool_content(bubble: _Bubble, args: str) -> str:
    sections = []
    code = args.rstrip("\n")
    if code:
        fence = _fence(code)
        sections.append(f"{fence}{bubble.lang}\n{code}\n{fence}")
    labelled = False
    for fmt, text in bubble.output:
        if fmt == "image":
            sections.append(f"![output image]({text})")
        elif fmt == "markdown":
            sections.append(text)
        else:
            fence = _fence(text)
            head = "" if labelled else "**Result**\n"
            body = text.rstrip("\n")
            sections.append(f"{head}{fence}text\n{body}\n{fence}")
            labelled = True
    return "\n\n".join(sections)
