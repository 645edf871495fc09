"""The API key appears nowhere it could leak: not in a recording, a log line, an error
message, a UI value, the served page's config, or the terminal chat.

A canary key is the app's key and the fake server's, so every request is authorised
with it; each path of the fault table runs with it (and servers that echo it back in
their error messages, as OpenAI does, masked or not); then everything written and
shown is searched for it, and for any 12-character piece of it.
"""

from __future__ import annotations

import io
import logging
import secrets
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from conftest import Fake, make_settings, run_turn, text_script
from gradio_client import Client
from test_faults import FAULTS, close, garbage
from test_load import launched_app

from streamchat.cli import chat_loop
from streamchat.replayapi import Script
from streamchat.session import Runtime
from streamchat.sse import RawEvent
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript

APIS = ["responses", "assistants", "chat"]
CANARY = "sk-canary-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))
MASKED = f"{CANARY[:8]}{'*' * 20}{CANARY[-4:]}"
"""How OpenAI echoes a rejected key: its head and tail, the middle starred."""
PIECE = 12


def leaks(text: str) -> list[str]:
    """Every 12-character piece of the canary found in ``text`` (the whole key included)."""
    return [CANARY[i : i + PIECE] for i in range(len(CANARY) - PIECE + 1) if CANARY[i : i + PIECE] in text]


def all_files(folder: Path) -> str:
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.fixture
def canary(fake: Fake, caplog: pytest.LogCaptureFixture) -> Iterator[Fake]:
    """The fake server accepts only the canary; every logger records at DEBUG."""
    fake.core.api_key = CANARY
    caplog.set_level(logging.DEBUG)
    for name in ("streamchat", "openai", "httpx2", "httpcore2", "httpx", "httpcore", "gradio"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield fake


def app_log(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record, formatted with its traceback (the fake server's own
    uvicorn logs are the test rig's, not the app's)."""
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records if not r.name.startswith("uvicorn"))


def echoing(status: int) -> Script:
    message = f"Incorrect API key provided: {MASKED}. You sent {CANARY}; see https://platform.openai.com/account/api-keys."
    return Script(status=status, error={"message": message, "type": "invalid_request_error", "param": None, "code": None})


def error_event(api: str) -> Script:
    """A stream that fails with an error event whose message carries the key."""
    error = {"code": "invalid_api_key", "message": f"Incorrect API key provided: {CANARY}."}
    if api == "responses":
        events = synth.responses_stream(["Par", "tial"], end="error", error=error)
    elif api == "assistants":
        events = [*synth.assistants_stream(["Par", "tial"], end=None), RawEvent("error", {**error, "type": "server_error"})]
    else:
        events = synth.chat_stream(["Par", "tial"], error=error)
    return Script(events=synth.timed(events, step=0))


FAST_FAULTS = [f for f in FAULTS if f.min_seconds == 0]
"""The fault table less its timing cases (they take seconds and show the same lines)."""


@pytest.mark.parametrize("api", APIS)
async def test_no_path_leaks_the_key(api: str, canary: Fake, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    assert len(FAST_FAULTS) >= len(FAULTS) - 5  # most of the table runs here
    cases: list[tuple[str, list[Script], dict[str, Any]]] = [(f.id, f.scripts(api), f.settings) for f in FAST_FAULTS]
    cases += [(f"echo-{code}", [echoing(code)], {"max_retries": 0}) for code in (400, 401, 403, 404, 422, 429, 500)]
    cases += [("error-event-echo", [error_event(api)], {})]
    cases += [
        ("garbage-with-key", [FaultScript(events=text_script(api, "ok").events, raw_tail=garbage(api) + CANARY.encode())], {})
    ]
    shown: list[str] = []
    for name, scripts, settings in cases:
        canary.queue.clear()
        canary.push(*scripts)
        runtime = Runtime(make_settings(api, url=canary.url, api_key=CANARY, record_dir=tmp_path / name, **settings))
        chat = runtime.new_session()
        values = await run_turn(chat, f"question for {name}")
        values += await run_turn(chat, "and the next one")
        shown.append(f"{name}: {values!r}")
        await close(runtime)
    assert canary.core.requests()  # the paths ran, authorised with the canary
    text = "\n".join(shown)
    assert "[redacted]" in text  # the echoes reached the UI, without the key
    assert [line[:40] for line in shown if leaks(line)] == [], "a UI value"
    assert leaks(all_files(tmp_path)) == [], "a recording"
    assert leaks(app_log(caplog)) == [], "a log line"


@pytest.mark.parametrize("api", ["responses", "assistants"])
async def test_a_key_the_server_rejects_stays_hidden(
    api: str, canary: Fake, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The server knows another key: everything (creating the assistant, the
    conversation, the thread) fails with 401, and the close still tries to clean up."""
    canary.core.api_key = "sk-other-000000000000000000"
    runtime = Runtime(make_settings(api, url=canary.url, api_key=CANARY, record_dir=tmp_path, max_retries=1))
    chat = runtime.new_session()
    values = await run_turn(chat, "hello")
    assert chat.last_status == "failed"
    assert "401" in repr(values[-1])
    await close(runtime)
    assert leaks(repr(values)) == [] and leaks(all_files(tmp_path)) == [] and leaks(app_log(caplog)) == []


def test_settings_never_print_the_key() -> None:
    settings = make_settings(api_key=CANARY)
    assert settings.api_key == CANARY
    assert leaks(repr(settings)) == [] and leaks(str(settings)) == []


async def test_the_terminal_chat_never_prints_the_key(canary: Fake, caplog: pytest.LogCaptureFixture) -> None:
    canary.push(echoing(403), error_event("chat"))
    runtime = Runtime(make_settings("chat", url=canary.url, api_key=CANARY))
    out = io.StringIO()
    await chat_loop(runtime, io.StringIO("first\nsecond\nthird\nq\n"), out)
    printed = out.getvalue()
    assert "Echo: third" in printed and "403" in printed
    assert leaks(printed) == [] and leaks(app_log(caplog)) == []
    assert runtime.client is not None
    await runtime.client.close()


def test_the_served_app_never_shows_the_key(
    canary: Fake,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The real app, live with the canary and recording: its page config, API info, a
    chat that ends in an echoed 401 and one that works, and what it printed."""
    canary.push(echoing(401))
    record = tmp_path / "rec"
    with launched_app(canary, "responses", monkeypatch, OPENAI_API_KEY=CANARY, STREAMCHAT_RECORD=str(record)) as (app, url):
        assert app.runtime.settings.api_key == CANARY
        pages = [httpx2.get(url + path, timeout=10).text for path in ("", "config", "gradio_api/info")]
        client = Client(url, verbose=False)
        try:
            outputs = []
            for prompt in ("first", "second"):
                job = client.submit(prompt, api_name="/chat")
                job.result(timeout=30)
                outputs.append(job.outputs())
        finally:
            client.close()
    assert "Echo: second" in repr(outputs) and "401" in repr(outputs)
    captured = capfd.readouterr()
    seen = "\n".join([*pages, repr(outputs), captured.out, captured.err, app_log(caplog), all_files(record)])
    assert "Incorrect API key" not in repr(outputs)  # a 401's server text is never shown
    assert leaks(seen) == []
