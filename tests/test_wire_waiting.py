"""Waiting is visible and bounded: before the first token the chat says what it waits
for (silence, a rate limit, a failing server) and the answer replaces that line; the
whole wait for a response is bounded, and a ``Retry-After`` longer than the read
timeout ends the turn at once. Real HTTP to the fake server; retries wait on a fake
``sleep`` that records what it was asked and returns at once."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Fake, make_settings, run_turn, text_script

from streamchat.replayapi import Script
from streamchat.session import Runtime
from streamchat.testing.faults import FaultScript

APIS = ["responses", "assistants", "chat"]
STREAM_PATH = {"responses": "/responses", "assistants": "/runs", "chat": "/chat/completions"}


class FakeSleep:
    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def http_error(status: int, **headers: str) -> Script:
    error = {"message": f"Scripted {status}.", "type": "rate_limit_exceeded", "param": None, "code": None}
    return Script(status=status, error=error, headers=headers)


def waiting_lines(values: list[Any]) -> list[str]:
    return [
        m["metadata"]["title"]
        for v in values
        if isinstance(v, list)
        for m in v
        if m.get("metadata") and m["metadata"]["title"].startswith("⏳")
    ]


def streams(fake: Fake, api: str) -> int:
    return len([r for r in fake.core.requests("POST", STREAM_PATH[api]) if not r.path.endswith("/cancel")])


async def turn(fake: Fake, api: str, **settings: Any) -> tuple[Runtime, list[Any]]:
    runtime = Runtime(make_settings(api, url=fake.url, **settings))
    session = runtime.new_session()
    values = await run_turn(session, "hello")
    await session.close()
    assert runtime.client is not None
    await runtime.client.close()
    return runtime, values


@pytest.mark.parametrize("api", APIS)
async def test_a_rate_limit_is_said_then_replaced_by_the_answer(api: str, fake: Fake) -> None:
    sleep = FakeSleep()
    fake.push(http_error(429, **{"retry-after": "20"}), text_script(api, "Here it is."))
    _, values = await turn(fake, api, read_timeout=30.0, max_retries=2, sleep=sleep)
    assert sleep.asked == [20.0]
    assert waiting_lines(values) == ["⏳ Rate limited: retrying in 20 s (attempt 2 of 3)…"]
    assert values[-1] == "Here it is."  # the answer replaced the line
    assert streams(fake, api) == 2


@pytest.mark.parametrize("api", APIS)
async def test_a_retry_after_longer_than_the_read_timeout_ends_the_turn_at_once(api: str, fake: Fake) -> None:
    sleep = FakeSleep()
    fake.push(http_error(429, **{"retry-after": "40"}), text_script(api, "too late"))
    _, values = await turn(fake, api, read_timeout=30.0, max_retries=2, sleep=sleep)
    assert sleep.asked == [] and streams(fake, api) == 1
    titles = [m["metadata"]["title"] for m in values[-1] if m.get("metadata")]
    assert any("Try again in 40 s" in t for t in titles), titles
    assert not waiting_lines(values[-1:])


async def test_retries_together_wait_at_most_one_read_timeout(fake: Fake) -> None:
    """Two 429s asking 20 s each with a 30 s read timeout: one wait, then the turn ends
    (not 40 s of waiting, as the SDK's own retries did)."""
    sleep = FakeSleep()
    fake.push(*[http_error(429, **{"retry-after": "20"})] * 3)
    _, values = await turn(fake, "responses", read_timeout=30.0, max_retries=2, sleep=sleep)
    assert sleep.asked == [20.0] and streams(fake, "responses") == 2
    titles = [m["metadata"]["title"] for m in values[-1] if m.get("metadata")]
    assert any("Rate limited or out of quota (429)" in t and "Try again in 20 s" in t for t in titles), titles


async def test_a_failing_server_is_said_with_the_attempt(fake: Fake) -> None:
    sleep = FakeSleep()
    fake.push(http_error(503), http_error(503), text_script("chat", "Back."))
    _, values = await turn(fake, "chat", read_timeout=30.0, max_retries=2, sleep=sleep)
    assert len(sleep.asked) == 2 and 0.375 <= sleep.asked[0] <= 0.5 and 0.75 <= sleep.asked[1] <= 1.0
    lines = waiting_lines(values)
    assert any("503: retrying in 1 s (attempt 2 of 3)" in line for line in lines), lines
    assert any("(attempt 3 of 3)" in line for line in lines), lines
    assert values[-1] == "Back."


@pytest.mark.parametrize("api", APIS)
async def test_silence_before_the_first_token_shows_a_waiting_line(api: str, fake: Fake) -> None:
    script = text_script(api, "Finally.")
    fake.push(FaultScript(events=script.events, stall_headers=0.4))
    _, values = await turn(fake, api, read_timeout=5.0, wait_notice=0.05)
    assert "⏳ Waiting for the server…" in waiting_lines(values)
    assert values[-1] == "Finally."


async def test_no_waiting_line_when_the_answer_comes_quickly(fake: Fake) -> None:
    fake.push(text_script("responses", "Quick."))
    _, values = await turn(fake, "responses", read_timeout=5.0, wait_notice=3.0)
    assert waiting_lines(values) == [] and values[-1] == "Quick."
