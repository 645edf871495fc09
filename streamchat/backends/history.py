"""The chat as the page shows it → what the model is told. Pure: no I/O, no Gradio.

Gradio's ChatInterface hands the chat function its history in several shapes: content as
a string (gradio_client, our own yields), as a list of parts (the browser:
``[{"type": "text", "text": …}]``, files, components), or as a file value (a tuple of
paths, a ``{"path": …}`` dict). Messages with ``metadata`` are the app's own bubbles
(tool calls, status lines) and are not something the model said.

``visible`` turns any of these into plain ``{"role", "content": str}`` messages, one per
speaker change, and ``history_key`` names such a history independently of how it was
rendered (Gradio's ``inspect.cleandoc`` re-indents text on its way to the page), so the
backends can tell whether the history a turn arrives with is the one their remote state
was built from (see docs/architecture.md, "Conversation state").
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def _file_name(value: Any) -> str:
    # The path's name first: the page sends a user's file back with ``orig_name`` null
    # and its path in Gradio's cache (``<hash>/<original name>``), so the chat function's
    # own form of the same message names it the same way.
    if isinstance(value, dict):
        value = value.get("path") or value.get("orig_name") or value.get("url") or ""
    return os.path.basename(str(value)) if value else "file"


def part_text(part: Any) -> str:
    """The text of one content part: text as is, a file or component as a short label."""
    if isinstance(part, str):
        return part
    if isinstance(part, (tuple, list)):  # a file given as (path, alt text)
        return f"[file: {_file_name(part[0])}]" if part else ""
    if not isinstance(part, dict):
        return ""
    kind = part.get("type")
    if kind == "text" or (kind is None and isinstance(part.get("text"), str)):
        text = part.get("text")
        if isinstance(text, dict):  # Assistants' {"value": …}
            text = text.get("value")
        return text if isinstance(text, str) else ""
    if kind == "file" or "file" in part:
        return f"[file: {_file_name(part.get('file') or part)}]"
    if kind == "component" or "component" in part:
        return f"[{part.get('component') or 'component'}]"
    if "path" in part:
        return f"[file: {_file_name(part)}]"
    return ""


def content_text(content: Any) -> str:
    """A message's content as one string, whatever shape it came in."""
    if isinstance(content, list):
        return "\n\n".join(t for t in (part_text(p) for p in content) if t)
    return part_text(content)


def _file_of(part: Any) -> tuple[str, str] | None:
    """``(name, path)`` of a content part that is a file (any of Gradio's shapes)."""
    if isinstance(part, (tuple, list)):
        return (_file_name(part[0]), str(part[0])) if part and isinstance(part[0], str) else None
    if not isinstance(part, dict) or part.get("type") in ("text", "component"):
        return None
    value = part.get("file") if isinstance(part.get("file"), dict) else part if "path" in part else None
    if not isinstance(value, dict) or not isinstance(value.get("path"), str):
        return None
    return _file_name(value), value["path"]


def content_files(content: Any) -> list[tuple[str, str]]:
    """The files of a message's content, as ``(name, path)``: what the user attached
    (Gradio's upload cache paths, which may since have been deleted)."""
    if isinstance(content, list):
        return [f for f in (_file_of(p) for p in content) if f is not None]
    found = _file_of(content)
    return [found] if found is not None else []


def content_words(content: Any) -> str:
    """A message's own text: its text parts, without the labels of its files."""
    parts = content if isinstance(content, list) else [content]
    return "\n\n".join(t for t in (part_text(p) for p in parts if _file_of(p) is None) if t)


def visible(history: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """The conversation as the model should see it: user and assistant text, the app's
    bubbles (messages with ``metadata``) left out, consecutive assistant messages joined
    (a turn's text around its tool bubbles is one answer). User messages stay apart: a
    message whose turn failed is still a message of its own."""
    return [m for m, _ in visible_with_sources(history)]


def visible_with_sources(history: list[dict[str, Any]] | None) -> list[tuple[dict[str, str], Any]]:
    """``visible``, each message with the content it came from (a user message's, for its
    files; an assistant's joined answer keeps its first message's)."""
    out: list[tuple[dict[str, str], Any]] = []
    for message in history or []:
        if not isinstance(message, dict) or message.get("metadata"):
            continue
        role = message.get("role")
        if role not in ("user", "assistant"):
            continue
        text = content_text(message.get("content"))
        if not text.strip():
            continue
        if out and out[-1][0]["role"] == role == "assistant":
            out[-1][0]["content"] += "\n\n" + text
        else:
            out.append(({"role": str(role), "content": text}, message.get("content")))
    return out


def history_key(messages: list[dict[str, str]]) -> str:
    """A name for a visible history (from ``visible``): the same conversation gets the
    same key however its whitespace was rendered."""
    pairs = [(m["role"], " ".join(m["content"].split())) for m in messages]
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()[:32]


EMPTY_KEY = history_key([])


def user_count(messages: list[dict[str, str]]) -> int:
    return sum(1 for m in messages if m["role"] == "user")


def answered_key(history: list[dict[str, Any]], message: Any, answer: list[dict[str, Any]]) -> str:
    """The key of the history the page shows once ``message`` (its content: text, or
    parts with files) got ``answer`` (the turn's messages, as the chat function yielded them)."""
    return history_key(visible([*history, {"role": "user", "content": message}, *answer]))
