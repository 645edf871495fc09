"""The guard on its own: limits parsed from the variables, sliding windows and the daily
cap on an injected clock (advanced by the test, never slept), the allow-list, and who
counts as one visitor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamchat.config import ConfigError
from streamchat.guard import DAY, SWEEP_EVERY, AllowList, Guard, GuardConfigError, Limit, parse_limits, parse_names, visitor_key
from streamchat.options import settings_from


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()


def test_limits_are_read_in_the_forms_the_docs_give() -> None:
    assert parse_limits("10/minute") == (Limit(10, 60),)
    assert parse_limits("100/day, 10/minute") == (Limit(10, 60), Limit(100, DAY))
    assert parse_limits("5 per 10 minutes,2/s,3/hours") == (Limit(2, 1), Limit(5, 600), Limit(3, 3600))
    assert parse_limits("") == parse_limits(None) == parse_limits("off") == ()
    assert str(Limit(3, 60)) == "3 messages a minute" and str(Limit(1, 600)) == "1 message every 10 minutes"
    for bad in ("10", "ten/minute", "10/fortnight", "0/minute", "3/0minutes"):
        with pytest.raises(GuardConfigError):
            parse_limits(bad)


def test_bad_values_stop_the_app_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="STREAMCHAT_RATE_LIMIT: '10/fortnight'"):
        settings_from([], {"STREAMCHAT_RATE_LIMIT": "10/minute,10/fortnight"})
    for name, value in (("STREAMCHAT_MAX_OUTPUT_TOKENS", "lots"), ("STREAMCHAT_DAILY_REQUESTS", "0")):
        with pytest.raises(ConfigError, match=name):
            settings_from([], {name: value})
    settings, _ = settings_from(
        [],
        {
            "STREAMCHAT_RATE_LIMIT": "3/minute",
            "STREAMCHAT_MAX_OUTPUT_TOKENS": "256",
            "STREAMCHAT_DAILY_REQUESTS": "500",
            "STREAMCHAT_ALLOWED_USERS": "Alice, @bob carol",
            "STREAMCHAT_ALLOWED_ORGS": "Acme",
        },
    )
    assert settings.rate_limits == (Limit(3, 60),) and settings.max_output_tokens == 256 and settings.daily_requests == 500
    assert settings.allowed_users == {"alice", "bob", "carol"} and settings.allowed_orgs == {"acme"}
    assert parse_names(None) == frozenset()


def test_the_fourth_message_in_a_minute_waits_for_the_first_to_leave_the_window() -> None:
    clock = Clock(NOON)
    guard = Guard(parse_limits("3/minute"), clock=clock)
    for step in (0, 10, 20):
        clock.now = NOON + step
        assert guard.admit("ip:a") is None
    clock.now = NOON + 25
    refusal = guard.admit("ip:a")
    assert refusal is not None and refusal.reason == "rate"
    assert refusal.retry_after == pytest.approx(35)  # the first message leaves at +60
    assert "3 messages a minute" in refusal.message and "35 s" in refusal.message and "12:01 UTC" in refusal.message
    # Asking again while refused counts for nothing: the wait does not grow.
    clock.now = NOON + 59
    refusal = guard.admit("ip:a")
    assert refusal is not None and refusal.retry_after == pytest.approx(1)
    clock.now = NOON + 60
    assert guard.admit("ip:a") is None  # the first left the window; the second leaves at +70
    assert guard.admit("ip:a") is not None
    clock.now = NOON + 70
    assert guard.admit("ip:a") is None


def test_visitors_are_counted_apart() -> None:
    clock = Clock(NOON)
    guard = Guard(parse_limits("2/minute"), clock=clock)
    assert guard.admit("ip:a") is None and guard.admit("ip:a") is None
    assert guard.admit("ip:a") is not None
    assert guard.admit("ip:b") is None and guard.admit("user:alice") is None


def test_combined_limits_name_the_one_that_keeps_the_visitor_waiting_longest() -> None:
    clock = Clock(NOON)
    guard = Guard(parse_limits("2/minute,3/hour"), clock=clock)
    for step in (0, 1, 120):
        clock.now = NOON + step
        assert guard.admit("ip:a") is None
    clock.now = NOON + 121
    refusal = guard.admit("ip:a")
    assert refusal is not None and "limit of 3 messages an hour" in refusal.message
    assert refusal.retry_after == pytest.approx(3600 - 121)
    assert "58 min" in refusal.message


def test_the_daily_cap_is_shared_and_opens_again_at_midnight_utc() -> None:
    clock = Clock(NOON)
    guard = Guard(parse_limits("10/minute"), daily=3, clock=clock)
    assert [guard.admit(v) for v in ("ip:a", "ip:b", "ip:c")] == [None, None, None]
    refusal = guard.admit("ip:d")
    assert refusal is not None and refusal.reason == "daily"
    assert refusal.retry_after == pytest.approx(12 * 3600) and "00:00 UTC" in refusal.message and "12 h" in refusal.message
    clock.now = NOON + 12 * 3600 - 1
    assert guard.admit("ip:d") is not None
    clock.now = NOON + 12 * 3600
    assert guard.admit("ip:d") is None


def test_a_rate_refusal_does_not_spend_the_daily_cap() -> None:
    clock = Clock(NOON)
    guard = Guard(parse_limits("1/minute"), daily=2, clock=clock)
    assert guard.admit("ip:a") is None
    assert guard.admit("ip:a") is not None and guard.admit("ip:a") is not None
    assert guard.admit("ip:b") is None  # the second of the day: still open


def test_the_allow_list_wants_a_listed_user_or_a_member_of_a_listed_org() -> None:
    allow = AllowList(parse_names("alice"), parse_names("acme"))
    guard = Guard(allow=allow)
    assert guard.active and not Guard().active
    refusal = guard.admit("ip:a", None)
    assert refusal is not None and refusal.reason == "sign_in" and "sign in" in refusal.message
    mallory = {"preferred_username": "mallory", "orgs": [{"preferred_username": "evil", "name": "acme"}]}
    refusal = guard.admit("user:mallory", mallory)
    assert refusal is not None and refusal.reason == "not_allowed" and "mallory" in refusal.message
    assert guard.admit("user:alice", {"preferred_username": "Alice"}) is None
    assert guard.admit("user:bob", {"preferred_username": "bob", "orgs": [{"preferred_username": "ACME"}]}) is None
    assert AllowList().permits(None)


def test_a_visitor_is_the_user_else_the_first_forwarded_hop_only_where_trusted() -> None:
    assert visitor_key("Alice", "10.0.0.1", "203.0.113.7", trust_forwarded=True) == "user:alice"
    assert visitor_key(None, "10.0.0.1", "203.0.113.7, 10.0.0.9", trust_forwarded=True) == "ip:203.0.113.7"
    assert visitor_key(None, "10.0.0.1", "203.0.113.7", trust_forwarded=False) == "ip:10.0.0.1"
    assert visitor_key(None, "10.0.0.1", None, trust_forwarded=True) == "ip:10.0.0.1"
    assert visitor_key(None, None, "", trust_forwarded=True) == "ip:unknown"


def test_memory_holds_only_visitors_still_inside_a_window() -> None:
    clock = Clock(NOON)
    guard = Guard(parse_limits("5/minute"), clock=clock)
    for n in range(SWEEP_EVERY - 1):
        assert guard.admit(f"ip:{n}") is None
    assert guard.visitors == SWEEP_EVERY - 1
    clock.now = NOON + 61
    assert guard.admit("ip:last") is None  # the sweep runs on this check
    assert guard.visitors == 1
