"""Who may chat, and how much: per-visitor rate limits, a daily cap for the whole app,
and an allow-list of Hugging Face users and organizations.

A public Space with an ``OPENAI_API_KEY`` secret lets anyone spend its owner's money;
the UI asks ``Guard.admit`` before each message that would reach the provider, and a
refusal is answered at once, in the chat, with when to try again.

Everything here is pure (no Gradio, no I/O) and reads time from an injected clock, so
tests advance it instead of sleeping. The counts live in memory, in this process only:
they start again when the app restarts, and two replicas count apart.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

DAY = 86_400.0

UNITS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": DAY,
    "day": DAY,
}
_LIMIT = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*([a-z]+?)s?\s*$", re.IGNORECASE)
_UNIT_WORDS = {1.0: "second", 60.0: "minute", 3600.0: "hour", DAY: "day"}

SWEEP_EVERY = 512
"""Checks between two sweeps that forget visitors with nothing left in any window."""


class GuardConfigError(ValueError):
    """A limit or list that cannot be understood (the message names the part)."""


@dataclass(frozen=True)
class Limit:
    """At most ``count`` messages in any ``window`` seconds."""

    count: int
    window: float

    def __str__(self) -> str:
        return f"{self.count} message{'' if self.count == 1 else 's'} {_per(self.window)}"


def _per(window: float) -> str:
    for seconds, word in sorted(_UNIT_WORDS.items(), reverse=True):
        if window >= seconds and window % seconds == 0:
            n = int(window // seconds)
            return ("an hour" if word == "hour" else f"a {word}") if n == 1 else f"every {n} {word}s"
    return f"every {window:g} seconds"


def parse_limits(text: str | None) -> tuple[Limit, ...]:
    """``10/minute``, ``100/day``, ``5 per 10 minutes``, several with commas.

    Raises ``GuardConfigError`` naming the part it could not read."""
    if text is None or not text.strip() or text.strip().lower() in ("0", "off", "none"):
        return ()
    limits = []
    for part in text.split(","):
        if not part.strip():
            continue
        match = _LIMIT.match(part)
        unit = UNITS.get(match.group(3).lower()) if match else None
        if match is None or unit is None:
            raise GuardConfigError(f"{part.strip()!r} is not a limit like 10/minute, 100/day or 5/10minutes")
        count, times = int(match.group(1)), int(match.group(2) or 1)
        if count < 1 or times < 1:
            raise GuardConfigError(f"{part.strip()!r}: the count and the period must be at least 1")
        limits.append(Limit(count, unit * times))
    return tuple(sorted(limits, key=lambda limit: limit.window))


def parse_names(text: str | None) -> frozenset[str]:
    """Hugging Face user or organization names, separated by commas or spaces, any case."""
    if not text:
        return frozenset()
    return frozenset(name.lower().lstrip("@") for name in re.split(r"[,\s]+", text) if name.strip())


def visitor_key(user: str | None, client_host: str | None, forwarded_for: str | None, *, trust_forwarded: bool) -> str:
    """Who is asking: the signed-in user when there is one, otherwise the client address.

    Behind the Spaces proxy every request comes from the proxy, and the visitor's
    address is the first hop of ``X-Forwarded-For``; anywhere else that header is
    whatever the client sent, so it counts only when ``trust_forwarded``."""
    if user:
        return f"user:{user.lower()}"
    if trust_forwarded and forwarded_for:
        first = forwarded_for.split(",")[0].strip()
        if first:
            return f"ip:{first}"
    return f"ip:{client_host or 'unknown'}"


@dataclass(frozen=True)
class AllowList:
    """Hugging Face users and organizations who may chat; empty: everyone may."""

    users: frozenset[str] = frozenset()
    orgs: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return bool(self.users or self.orgs)

    def permits(self, profile: Mapping[str, Any] | None) -> bool:
        """``profile`` is the OpenID user info Hugging Face gives a signed-in Space
        (``preferred_username``, and ``orgs`` with each one's ``preferred_username``)."""
        if not self.active:
            return True
        if profile is None:
            return False
        name = str(profile.get("preferred_username") or "").lower()
        if name and name in self.users:
            return True
        orgs = profile.get("orgs")
        if isinstance(orgs, list):
            for org in orgs:
                if isinstance(org, Mapping) and str(org.get("preferred_username") or "").lower() in self.orgs:
                    return True
        return False


Reason = Literal["sign_in", "not_allowed", "rate", "daily"]


@dataclass(frozen=True)
class Refusal:
    """Why a message is not sent, the sentence the chat shows, and when to try again
    (seconds from now; 0 when waiting will not help)."""

    reason: Reason
    message: str
    retry_after: float = 0.0


def describe(limits: tuple[Limit, ...], daily: int | None) -> str:
    """The limits in a few words, for the banner; empty when there are none."""
    parts = [f"{limit} per visitor" for limit in limits]
    if daily is not None:
        parts.append(f"{daily} messages a day in all")
    return ", ".join(parts)


def _wait(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _clock_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M UTC")


@dataclass
class Guard:
    """The limits of one app process. ``admit`` is the only call a turn makes: it
    either counts the message and returns None, or returns the refusal (a refused
    message counts for nothing, so asking again early does not push the wait back)."""

    limits: tuple[Limit, ...] = ()
    daily: int | None = None
    """Messages a day for the whole app (UTC days), or None for no cap."""
    allow: AllowList = field(default_factory=AllowList)
    clock: Callable[[], float] = time.time
    """Wall-clock seconds (the daily cap turns over at midnight UTC)."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}
        self._day = -1
        self._today = 0
        self._checks = 0

    @property
    def active(self) -> bool:
        return bool(self.limits or self.daily or self.allow.active)

    def admit(self, visitor: str, profile: Mapping[str, Any] | None = None, cost: int = 1) -> Refusal | None:
        """Count a message that costs ``cost`` requests (the UI: one, plus one per file
        it carries: an upload is work the provider does), or return the refusal; a
        message that costs more than a limit allows at all is refused for good."""
        if self.allow.active and not self.allow.permits(profile):
            if profile is None:
                return Refusal(
                    "sign_in", "🔒 This Space is open to invited Hugging Face users only: sign in with the button above to chat."
                )
            name = profile.get("preferred_username") or "you"
            return Refusal(
                "not_allowed",
                f"🔒 Sorry, {name}: this Space is open only to the Hugging Face users and organizations its owner invited.",
            )
        with self._lock:
            now = self.clock()
            self._sweep(now)
            stamps = self._seen.get(visitor)
            if stamps is not None:
                longest = self.limits[-1].window if self.limits else 0.0
                while stamps and stamps[0] <= now - longest:
                    stamps.popleft()
            refusal = self._rate(stamps, now, cost)
            if refusal is not None:
                return refusal
            day = int(now // DAY)
            if day != self._day:
                self._day, self._today = day, 0
            if self.daily is not None and self._today + cost > self.daily:
                reset = (day + 1) * DAY
                return Refusal(
                    "daily",
                    f"⏳ This Space has answered its {self.daily} messages for today, the most its owner allows. "
                    f"It opens again at 00:00 UTC, in {_wait(reset - now)}.",
                    reset - now,
                )
            self._today += cost
            if self.limits:
                if stamps is None:
                    stamps = self._seen[visitor] = deque()
                stamps.extend([now] * cost)
        return None

    def _rate(self, stamps: deque[float] | None, now: float, cost: int = 1) -> Refusal | None:
        """The refusal of the limit that keeps the visitor waiting longest, if any."""
        worst: tuple[float, Limit] | None = None
        for limit in self.limits:
            if cost > limit.count:
                return Refusal(
                    "rate",
                    f"⏳ This message counts as {cost} requests (one, and one per file), more than this Space's "
                    f"limit of {limit}: send fewer files at once.",
                )
            if stamps is None or len(stamps) + cost <= limit.count:
                continue
            inside = [t for t in stamps if t > now - limit.window]
            over = len(inside) + cost - limit.count
            if over <= 0:
                continue
            # Room for ``cost`` more once the ``over`` oldest in the window have left it.
            free_at = inside[over - 1] + limit.window
            if worst is None or free_at > worst[0]:
                worst = (free_at, limit)
        if worst is None:
            return None
        free_at, limit = worst
        return Refusal(
            "rate",
            f"⏳ You have reached this Space's limit of {limit}. Try again in {_wait(free_at - now)} "
            f"(at {_clock_time(free_at)}).",
            free_at - now,
        )

    def _sweep(self, now: float) -> None:
        """Forget visitors whose messages are all out of every window (bounded memory)."""
        self._checks += 1
        if self._checks % SWEEP_EVERY or not self.limits:
            return
        horizon = now - self.limits[-1].window
        for key in [k for k, stamps in self._seen.items() if not stamps or stamps[-1] <= horizon]:
            del self._seen[key]

    def describe(self) -> str:
        return describe(self.limits, self.daily)

    @property
    def visitors(self) -> int:
        """Visitors currently remembered (for tests of the memory bound)."""
        return len(self._seen)
