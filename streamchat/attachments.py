"""Files the user hands the assistant: what each one is, whether it may be sent, and its
forms on the wire. Pure apart from reading the file once; no Gradio, no SDK.

A file from the page (an upload, a drop, gradio_client's ``handle_file``) or from the
terminal chat's ``/file PATH`` becomes an ``Attachment``: its name, its type as sniffed
from its first bytes (not trusted from the name alone), its size and SHA-256. The
``kind`` decides where it goes: an ``image`` is shown to the model (each API's own image
part), a ``document`` is searched (file_search), read (``input_file``) or, on Chat
Completions, inlined as text when it is a small text file (``inline_text``). Anything
else, anything over the limits or unreadable, is refused with one line before anything
is sent (``AttachmentError``). The limits come from the config's ``attachments:``
section (``Limits``; defaults in docs/attachments.md).
"""

from __future__ import annotations

import base64
import hashlib
import html
import mimetypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["image", "document"]

IMAGE_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
"""Image types every backend's vision input takes, by the name used in the config."""

TEXT_TYPES: dict[str, str] = {
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "json": "application/json",
    "py": "text/x-python",
    "js": "text/javascript",
    "ts": "text/x-typescript",
    "html": "text/html",
    "css": "text/css",
    "yaml": "application/x-yaml",
    "yml": "application/x-yaml",
    "xml": "application/xml",
    "c": "text/x-c",
    "cpp": "text/x-c++",
    "java": "text/x-java",
    "go": "text/x-go",
    "rs": "text/x-rust",
    "sh": "application/x-sh",
    "tex": "text/x-tex",
}
"""Text documents, by extension: accepted when their bytes are UTF-8 text."""
DOCUMENT_TYPES: dict[str, str] = {"pdf": "application/pdf", **TEXT_TYPES}
SEARCHABLE_TYPES = frozenset(
    mime
    for ext, mime in DOCUMENT_TYPES.items()
    if ext in ("pdf", "txt", "md", "json", "py", "js", "ts", "html", "css", "c", "cpp", "java", "go", "sh", "tex")
)
"""Document types file_search reads (OpenAI's list of supported files, of those the app
accepts): CSV, YAML, XML and Rust are not among them; each backend sends those another way."""


@dataclass(frozen=True)
class Limits:
    """What the app accepts (``attachments:`` in the config; the defaults are here)."""

    max_file_mb: float = 20.0
    """Bytes one file may have, in MiB (OpenAI takes images up to 20 MB per image)."""
    max_files: int = 5
    """Files one message may carry."""
    types: tuple[str, ...] = (*IMAGE_TYPES, *DOCUMENT_TYPES)
    """Accepted types, by extension (``jpeg`` covers ``.jpg``)."""
    inline_text_kb: float = 64.0
    """Chat Completions: a text document up to this many KiB is sent as text in the
    message (that API takes no files); a larger one, or a PDF, is refused there."""

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    @property
    def inline_bytes(self) -> int:
        return int(self.inline_text_kb * 1024)


class AttachmentError(ValueError):
    """A file that is not sent: the message is the one line the chat shows."""


@dataclass(frozen=True)
class Attachment:
    """One file of a user message."""

    name: str
    """The file's name as the user gave it (no folder)."""
    mime: str
    """Its type, sniffed from its bytes (``image/png``, ``application/pdf``, ``text/csv``)."""
    size: int
    """Bytes."""
    sha256: str
    """Hex digest of the bytes: what a recording keeps and replay matches on."""
    kind: Kind
    """``image`` (shown to the model) or ``document`` (searched, read or inlined)."""
    path: Path | None = None
    """Where the bytes are (Gradio's upload cache, the CLI's path); None when they came
    in memory only (``data``)."""
    data: bytes | None = field(default=None, repr=False, compare=False)
    """The bytes, when held in memory (a replayed recording's own attachments)."""

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise AttachmentError(f"{self.name}: its contents are not available.")
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise AttachmentError(f"{self.name}: could not be read ({exc.strerror or exc}).") from None

    def data_url(self) -> str:
        """The file as a ``data:`` URL (images for every API, ``input_file`` data)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.read()).decode('ascii')}"

    @property
    def is_text(self) -> bool:
        return self.kind == "document" and self.mime != "application/pdf"

    def meta(self) -> dict[str, Any]:
        """What a recording keeps of it (its bytes only with ``--record-attachments``)."""
        return {"name": self.name, "type": self.mime, "size": self.size, "sha256": self.sha256}


def _sniff_image(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _extension(name: str) -> str:
    ext = os.path.splitext(name)[1].lower().lstrip(".")
    return "jpeg" if ext == "jpg" else ext


def _label(limits: Limits) -> str:
    return ", ".join(limits.types)


def inspect(path: str | os.PathLike[str], limits: Limits, *, name: str | None = None) -> Attachment:
    """The attachment for a file, or ``AttachmentError`` with one line for the chat:
    unreadable, empty, over the size limit, or of a type not accepted. The type is
    sniffed from the bytes: an image by its signature, a PDF by ``%PDF-``, a text
    document by its extension *and* UTF-8 content."""
    path = Path(path)
    shown = name or path.name
    try:
        size = path.stat().st_size
    except OSError:
        raise AttachmentError(f"{shown}: could not be read (no such file).") from None
    if not path.is_file():
        raise AttachmentError(f"{shown}: not a file.")
    if size > limits.max_bytes:
        raise AttachmentError(
            f"{shown}: {size / (1024 * 1024):.1f} MiB is over the limit of {limits.max_file_mb:g} MiB per file."
        )
    if size == 0:
        raise AttachmentError(f"{shown}: the file is empty.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AttachmentError(f"{shown}: could not be read ({exc.strerror or exc}).") from None
    return classify(data, shown, limits, path=path)


def classify(data: bytes, name: str, limits: Limits, *, path: Path | None = None) -> Attachment:
    """``inspect`` for bytes already read (``path`` is kept as where they came from)."""
    digest = hashlib.sha256(data).hexdigest()
    image = _sniff_image(data[:16])
    ext = _extension(name)
    kind: Kind
    if image is not None:
        kind, key, mime = "image", image, IMAGE_TYPES[image]
    elif data.startswith(b"%PDF-"):
        kind, key, mime = "document", "pdf", DOCUMENT_TYPES["pdf"]
    elif ext in TEXT_TYPES and _is_text(data):
        kind, key, mime = "document", ext, TEXT_TYPES[ext]
    elif ext in IMAGE_TYPES or ext == "pdf":
        raise AttachmentError(f"{name}: not a valid {ext.upper()} file (its contents say otherwise).")
    elif ext in TEXT_TYPES:
        raise AttachmentError(f"{name}: not UTF-8 text, as a .{ext} file should be.")
    else:
        guess = mimetypes.guess_type(name)[0] or "unknown type"
        raise AttachmentError(f"{name}: {guess} files are not accepted (accepted: {_label(limits)}).")
    if key not in limits.types:
        raise AttachmentError(f"{name}: {mime} files are not accepted here (accepted: {_label(limits)}).")
    if len(data) > limits.max_bytes:
        raise AttachmentError(
            f"{name}: {len(data) / (1024 * 1024):.1f} MiB is over the limit of {limits.max_file_mb:g} MiB per file."
        )
    return Attachment(name=name, mime=mime, size=len(data), sha256=digest, kind=kind, path=path, data=None if path else data)


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return "\x00" not in text


def check_count(count: int, limits: Limits) -> None:
    if count > limits.max_files:
        raise AttachmentError(f"{count} files is over the limit of {limits.max_files} per message.")


# -- Chat Completions: small text documents inlined ------------------------------------

_INLINE = re.compile(r'\A<file name="([^"]*)" type="([^"]*)">\n(.*)\n</file>\Z', re.S)


def inline_text(attachment: Attachment) -> str:
    """A text document as a text part of its own, for an API that takes no files. The
    wrapper is fixed so the replay server can tell it from the user's words and match it
    by its hash: the body is the file's text exactly."""
    body = attachment.read().decode("utf-8")
    return f'<file name="{html.escape(attachment.name)}" type="{attachment.mime}">\n{body}\n</file>'


def parse_inline(text: str) -> tuple[str, str, str] | None:
    """``(name, type, body)`` of a part made by ``inline_text``, else None."""
    found = _INLINE.match(text)
    if found is None:
        return None
    return html.unescape(found.group(1)), found.group(2), found.group(3)


def data_url_bytes(url: str) -> bytes | None:
    """The bytes of a base64 ``data:`` URL, else None (an http URL, or not base64)."""
    if not url.startswith("data:"):
        return None
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError:
        return None


def elide_data_urls(value: Any) -> Any:
    """A request body with each ``data:`` URL replaced by its type, size and hash, and
    each document inlined as text (``inline_text``) by its name, type, hash and size, as
    a recording keeps it: the request as sent, without the files' bytes."""
    if isinstance(value, str):
        if value.startswith("data:"):
            raw = data_url_bytes(value)
            if raw is not None:
                mime = value[5:].split(";", 1)[0]
                return f"data:{mime};sha256={hashlib.sha256(raw).hexdigest()};size={len(raw)}"
        elif value.startswith("<file "):
            found = parse_inline(value)
            if found is not None:
                name, mime, body = found
                raw = body.encode("utf-8")
                return f'<file name="{html.escape(name)}" type="{mime}" sha256="{hashlib.sha256(raw).hexdigest()}" size="{len(raw)}"/>'
        return value
    if isinstance(value, dict):
        return {k: elide_data_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [elide_data_urls(v) for v in value]
    return value


def from_message(message: Any) -> tuple[str, list[tuple[str, str]]]:
    """The text and files (path, name) of a chat function's message: a string, or the
    multimodal textbox's ``{"text": …, "files": [path or {"path": …, "orig_name": …}]}``."""
    if isinstance(message, str):
        return message, []
    if isinstance(message, dict):
        text = message.get("text") or ""
        files = []
        for item in message.get("files") or []:
            path = item.get("path") if isinstance(item, dict) else item
            if isinstance(path, (str, os.PathLike)) and str(path):
                given = item.get("orig_name") if isinstance(item, dict) else None
                files.append((str(path), str(given or os.path.basename(str(path)))))
        return str(text), files
    return "", []
