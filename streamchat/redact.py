"""The one redaction policy for every text that leaves the app: the chat, the logs, the
recordings and their downloads, and the replay server's answers.

What is removed (replaced by ``[redacted]``):

- the app's own API key, exactly (when it is at least 8 characters long);
- API keys of the known shapes, anyone's: ``sk-…``, ``sk-proj-…``, ``rk-…``, ``pk-…``
  with at least 6 more key characters;
- masked forms, which still give away a key's ends: ``sk-ab…wxyz``, ``sk-ab...wxyz``,
  ``sk-ab****wxyz``, and the characters after "key ending in";
- in structured data (``scrub``), the query string of signed URLs.

Streamed text arrives in deltas and a key may be split over two of them:
``StreamRedactor`` holds back a short tail while it may be the start of a key and
releases it with the next delta (or at ``flush``, at the end of the stream).
``EventRedactor`` applies all of this to a turn's ``StreamEvent``s, and replaces text
UTF-8 cannot encode (lone surrogates) with U+FFFD, saying so once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from . import events as ev
from .events import StreamEvent

REDACTED = "[redacted]"

MIN_SECRET = 8
"""A secret shorter than this is not searched for (it would redact ordinary words)."""
MAX_HOLD = 1024
"""A streamed tail longer than this is released even if it still looks like a key."""

_KEY = re.compile(r"(?<![A-Za-z0-9])(?:sk|rk|pk)-[A-Za-z0-9_\-*]{6,}")
_MASKED = re.compile(
    r"(?<![A-Za-z0-9])(?:sk|rk|pk)-[A-Za-z0-9_\-]{0,24}(?:\*{2,}|\.{2,}|…)\s?[A-Za-z0-9_\-]{2,8}(?![A-Za-z0-9_\-])"
)
_ENDING = re.compile(r"(?i)\b(?:ending|ends) (?:in|with):? ?['\"‘“]?([A-Za-z0-9_\-]{4,8})(?![A-Za-z0-9_\-])")
_HOLD_KEY = re.compile(r"(?<![A-Za-z0-9])[srp](?:k(?:-[A-Za-z0-9_\-*.…]*)?)?$")
"""The tail of a text that may still become a key or a masked key."""
_ENDING_WORDS = ("ending in ", "ending with ", "ends in ", "ends with ")
_WORD_E = re.compile(r"(?<![A-Za-z0-9])[eE]")
_ENDING_TAIL = re.compile(r":? ?['\"‘“]?[A-Za-z0-9_\-]{0,8}")

# -- plain text ----------------------------------------------------------------------


def may_hold_pattern(text: str) -> bool:
    """A cheap first check (substring tests, much faster than the patterns): text
    without any of these holds no key pattern."""
    return "k-" in text or "nding" in text or "nds " in text or "NDING" in text or "NDS " in text


def spans(text: str, secret: str | None = None) -> list[tuple[int, int]]:
    """Where ``text`` holds something to redact: sorted, non-overlapping (start, end)."""
    found: list[tuple[int, int]] = []
    if secret and len(secret) >= MIN_SECRET:
        start = text.find(secret)
        while start >= 0:
            found.append((start, start + len(secret)))
            start = text.find(secret, start + len(secret))
    if not may_hold_pattern(text):
        return found
    found += [m.span() for m in _MASKED.finditer(text)]
    found += [m.span() for m in _KEY.finditer(text)]
    found += [m.span(1) for m in _ENDING.finditer(text)]
    merged: list[tuple[int, int]] = []
    for a, b in sorted(found):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def apply(text: str, found: list[tuple[int, int]]) -> str:
    out, i = [], 0
    for a, b in found:
        out += [text[i:a], REDACTED]
        i = b
    out.append(text[i:])
    return "".join(out)


def redact(text: str, secret: str | None = None) -> str:
    """``text`` without the secret, any key of a known shape, or a masked key."""
    found = spans(text, secret)
    return apply(text, found) if found else text


def _boundary(text: str, i: int) -> bool:
    return i == 0 or not text[i - 1].isalnum()


def hold_index(text: str, secret: str | None = None, start: int = 0) -> int:
    """Where the tail of ``text`` that may still become a key (with more text) starts;
    ``len(text)`` when nothing needs holding back. ``text[:start]`` is context only
    (already released): it is never held, but a key must start at a word boundary."""
    n = len(text)
    hold = n
    if secret and len(secret) >= MIN_SECRET:
        # At a word boundary only, like the patterns: a secret of a known shape is then
        # held exactly where they hold it, whether or not the secret is known (replay).
        i = text.find(secret[0], max(start, n - len(secret) + 1))
        while i >= 0:
            if secret.startswith(text[i:]) and _boundary(text, i):
                hold = i
                break
            i = text.find(secret[0], i + 1)
    match = _HOLD_KEY.search(text, max(start, n - MAX_HOLD))
    if match:
        hold = min(hold, match.start())
    for match in _WORD_E.finditer(text, max(start, n - 40)):
        i = match.start()
        rest = text[i:].lower()
        if any(
            words.startswith(rest) or (rest.startswith(words) and _ENDING_TAIL.fullmatch(rest[len(words) :]))
            for words in _ENDING_WORDS
        ):
            hold = min(hold, i)
            break
    return hold


def split_safe(text: str, secret: str | None = None, start: int = 0) -> tuple[list[tuple[int, int]], int]:
    """The spans to redact in ``text[start:hold]`` and ``hold``: what may be released
    now (``text[:start]`` is context, see ``hold_index``)."""
    hold = hold_index(text, secret, start)
    found = [(max(a, start), b) for a, b in spans(text, secret) if b > start]
    for a, b in reversed(found):
        if a < hold < b:
            hold = a
    return [(a, b) for a, b in found if b <= hold], hold


class StreamRedactor:
    """Redacts a text that arrives in deltas: ``feed`` returns what may be shown now,
    ``flush`` the held-back rest at the end of the stream."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self._held = ""
        self._before = ""
        """The last character released: context for the word-boundary checks."""

    def feed(self, delta: str) -> str:
        ctx = self._before
        text = ctx + self._held + delta
        found, hold = split_safe(text, self.secret, len(ctx))
        self._held = text[hold:]
        if hold > len(ctx):
            self._before = text[hold - 1]
        return apply(text[len(ctx) : hold], [(a - len(ctx), b - len(ctx)) for a, b in found])

    def flush(self) -> str:
        ctx = self._before
        text, self._held, self._before = ctx + self._held, "", ""
        found = [(max(a, len(ctx)) - len(ctx), b - len(ctx)) for a, b in spans(text, self.secret) if b > len(ctx)]
        return apply(text[len(ctx) :], found)

    @property
    def holding(self) -> bool:
        return bool(self._held)


# -- text UTF-8 cannot hold, and a turn's events ----------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
REPLACED = "Some characters could not be encoded (lone surrogates) and were replaced with \ufffd."
_STREAMED = ("text", "reasoning", "tool_args")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (which UTF-8 cannot encode) replaced by U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT, text)


def clean_message(message: dict[str, Any]) -> dict[str, Any]:
    """A history message whose text is ``clean_text``-ed (it is sent to the API again)."""
    content = message.get("content")
    if isinstance(content, str) and clean_text(content) != content:
        return {**message, "content": clean_text(content)}
    return message


class EventRedactor:
    """What a turn's events become before anything shows or logs them: every text
    redacted (streamed ones across delta boundaries, a possible key's start held back
    until it is known), and text UTF-8 cannot encode replaced, said once per turn."""

    def __init__(self, secret: str | None, *, said_replaced: bool = False) -> None:
        self.secret = secret
        self.said_replaced = said_replaced
        self.redactor = StreamRedactor(secret)
        self.last: StreamEvent | None = None
        """The streamed event whose text the redactor holds the tail of."""

    def _key(self, event: StreamEvent) -> tuple[str, str | None]:
        return (event.kind, event.call_id)

    def flush(self) -> list[StreamEvent]:
        last, self.last = self.last, None
        rest = self.redactor.flush()
        return [replace(last, text=rest)] if last is not None and rest else []

    def __call__(self, event: StreamEvent) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self.last is not None and (event.kind not in _STREAMED or self._key(event) != self._key(self.last)):
            out += self.flush()
        text = event.text
        if text and clean_text(text) != text:
            text = clean_text(text)
            if not self.said_replaced:
                self.said_replaced = True
                out.append(ev.notice(REPLACED))
        if event.kind in _STREAMED:
            self.last = event
            text = self.redactor.feed(text)
            if not text and event.text:
                return out  # all held back for now
        elif text:
            text = redact(text, self.secret)
        url = redact(event.url, self.secret) if event.url else event.url
        out.append(replace(event, text=text, url=url) if (text != event.text or url != event.url) else event)
        return out


# -- structured data ------------------------------------------------------------------

SIGNED_PARAMS = frozenset(
    {
        "sig",  # Azure SAS
        "se",
        "signature",  # CloudFront and others
        "key-pair-id",
        "policy",
        "x-amz-signature",  # S3 presigned
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",  # GCS signed
        "x-goog-credential",
        "token",
        "access_token",
    }
)
"""Query parameters that make a URL a signed one: its whole query string is dropped."""

SIGNED_HINT = re.compile(r"[?&](?:" + "|".join(re.escape(p) for p in sorted(SIGNED_PARAMS)) + r")=", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s\"'<>`)\]]+", re.IGNORECASE)


def _unsign(match: re.Match[str]) -> str:
    url = match.group(0)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    names = {name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if names & SIGNED_PARAMS:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return url


def scrub(value: Any, secret: str | None) -> Any:
    """``value`` redacted, and signed URLs' query strings removed, in every string it
    holds (keys included)."""
    if isinstance(value, str):
        value = redact(value, secret)
        if "://" in value:
            value = _URL.sub(_unsign, value)
        return value
    if isinstance(value, dict):
        return {scrub(k, secret): scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secret) for v in value]
    return value


def may_need(line: str, secret_json: str | None) -> bool:
    """Whether a serialized line may hold something ``scrub`` removes."""
    return bool((secret_json and secret_json in line) or may_hold_pattern(line) or ("://" in line and SIGNED_HINT.search(line)))


# -- logs -------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Redacts every record of the logger it is on (message, arguments, traceback)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = redact(text, secret)
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the record as it is
            return True
        record.msg, record.args = self._clean(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        return True


LOG_FILTER = RedactingFilter()
LOGGERS = ("streamchat", "openai")


def protect_logs(secret: str | None) -> None:
    """Put the filter on the app's loggers (once) and teach it ``secret``."""
    if secret and len(secret) >= MIN_SECRET:
        LOG_FILTER.secrets.add(secret)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if LOG_FILTER not in logger.filters:
            logger.addFilter(LOG_FILTER)
