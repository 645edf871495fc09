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
                job = client.submit({"text": prompt}, api_name="/chat")
                job.result(timeout=30)
                outputs.append(job.outputs())
        finally:
            client.close()
    assert "Echo: second" in repr(outputs) and "401" in repr(outputs)
    captured = capfd.readouterr()
    seen = "\n".join([*pages, repr(outputs), captured.out, captured.err, app_log(caplog), all_files(record)])
    assert "Incorrect API key" not in repr(outputs)  # a 401's server text is never shown
    assert leaks(seen) == []


# -- keys inside streamed text (issue 17, case 2) -------------------------------------------

FOREIGN = "sk-proj-" + "Zq7" * 20
"""Someone else's key, of the project-key shape: redacted like the app's own."""
MASKS = [f"{CANARY[:6]}...{CANARY[-4:]}", f"{CANARY[:5]}…{CANARY[-8:]}", f"key ending in {CANARY[-8:]}"]


def echo_deltas() -> list[str]:
    """An answer that echoes the key whole, split over two and over many deltas, and
    masked; plus a foreign project key split mid-prefix."""
    whole = [f"Bearer {CANARY} was sent. "]
    half = len(CANARY) // 2
    split = ["Split: ", CANARY[:half], CANARY[half:] + ". "]
    many = ["Bits: ", *[CANARY[i : i + 3] for i in range(0, len(CANARY), 3)], " end. "]
    masked = [f"Masked: {m}. " for m in MASKS]
    foreign = ["Other: s", "k-pr", FOREIGN[4:20], FOREIGN[20:] + " done."]
    return whole + split + many + masked + foreign


def echo_script(api: str) -> Script:
    deltas = echo_deltas()
    if api == "responses":
        events = synth.responses_stream(deltas, reasoning=["Thinking about s", CANARY[1:], " and more."])
    elif api == "chat":
        events = synth.chat_stream(deltas, reasoning=["Thinking about ", CANARY[:9], CANARY[9:], " and more."])
    else:
        events = synth.assistants_stream(deltas)
    return Script(events=synth.timed(events, step=0))


def masked_leaks(text: str) -> list[str]:
    """Masked forms, and the key's last 4 to 8 characters after a mask or "ending in"."""
    found = [m for m in MASKS if m in text]
    found += [tail for n in range(4, 9) for tail in (CANARY[-n:],) if f"...{tail}" in text or f"…{tail}" in text]
    found += [t for t in (CANARY[-8:], CANARY[-4:]) if f"ending in {t}" in text]
    return found + ([FOREIGN[:12]] if FOREIGN[8:20] in text else [])


@pytest.mark.parametrize("api", APIS)
async def test_a_server_echoing_the_key_in_streamed_text_reaches_nothing(
    api: str, canary: Fake, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The server streams the key whole, split across deltas and masked, in the answer
    and the reasoning: no UI value, recording, download copy or log line holds it."""
    from streamchat.ui import SessionSlot, download_copy

    canary.push(echo_script(api))
    runtime = Runtime(make_settings(api, url=canary.url, api_key=CANARY, record_dir=tmp_path / "rec"))
    chat = runtime.new_session()
    values = await run_turn(chat, "echo my key please")
    logging.getLogger("streamchat").warning("the server said: %s", values[-1])
    assert chat.last_status == "completed"
    assert chat.recorder is not None
    slot = SessionSlot()
    copy, turns = download_copy(slot, chat.recorder.path)
    await close(runtime)
    shown = repr(values)
    final = repr(values[-1])
    # The answer is all there, each secret replaced in place.
    for piece in ("Bearer [redacted] was sent.", "Split: [redacted].", "Bits: [redacted] end.", "Other: [redacted] done."):
        assert piece in final, final
    assert final.count("Masked: ") == 3 and "ending in [redacted]" in final
    if api != "assistants":
        assert "Thinking about [redacted] and more." in final
    written = all_files(tmp_path)
    downloaded = copy.read_text(encoding="utf-8")
    slot.cleanup()
    assert turns == 1 and "[redacted]" in downloaded
    for where, text in (("UI", shown), ("recording", written), ("download", downloaded), ("log", app_log(caplog))):
        assert leaks(text) == [], where
        assert masked_leaks(text) == [], where
    # What was recorded replays as what was shown.
    rec = tmp_path / "rec"
    replayed = Runtime(make_settings(api, mode="replay", api_key=None, replay_path=rec, speed=0.0))
    again = await run_turn(replayed.new_session(), "echo my key please")
    assert answer_text(again[-1]) == answer_text(values[-1])


def answer_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join(m["content"] for m in value if not m.get("metadata"))


def test_every_key_shape_is_redacted_and_ordinary_text_is_not() -> None:
    """The patterns themselves: deleting any of them fails here."""
    from streamchat.redact import StreamRedactor, redact

    own = "sk-live-" + "A1b2C3d4" * 4
    cases = {
        f"key {own}.": "key [redacted].",
        f"Bearer {own}": "Bearer [redacted]",
        "legacy sk-" + "a" * 48 + " end": "legacy [redacted] end",
        "proj sk-proj-abc_DEF-123456789 end": "proj [redacted] end",
        "svc sk-svcacct-abcdef123456 end": "svc [redacted] end",
        "rk-abcdef123456 and pk-abcdef123456": "[redacted] and [redacted]",
        "starred sk-proj-****************wxyz.": "starred [redacted].",
        "dots sk-ab...wxyz!": "dots [redacted]!",
        "ellipsis sk-abc…12345678)": "ellipsis [redacted])",
        "the key ending in acfdbb00 was refused": "the key ending in [redacted] was refused",
        "Key ends with '1a2B' here": "Key ends with '[redacted]' here",
    }
    for text, expected in cases.items():
        assert redact(text, own) == expected, text
    # Not keys: words with "sk-" inside, short ids, a secret too short to search for.
    for text in ("a risk-free task-manager", "desk-lamp", "sk-short", "see sk- alone", "ending in a draw"):
        assert redact(text, "abc") == text
    # A secret of an unknown shape is still found exactly, but only a long enough one.
    assert redact("token=xyz-Secret-Value-42;", "xyz-Secret-Value-42") == "token=[redacted];"
    # Streamed: every way of cutting the text gives the same result as the whole.
    text = f"a {own} b sk-proj-Zq7Zq7Zq7Zq7 c key ending in {own[-6:]} d"
    whole = redact(text, own)
    for cut in range(1, len(text)):
        for size in (1, 3):
            redactor = StreamRedactor(own)
            pieces = [text[:cut]] + [text[i : i + size] for i in range(cut, len(text), size)]
            assert "".join(redactor.feed(p) for p in pieces) + redactor.flush() == whole, (cut, size)


def test_the_log_filter_redacts_messages_arguments_and_tracebacks(canary: Fake, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever a module logs through the app's loggers, however it carries the key."""
    Runtime(make_settings("chat", url=canary.url, api_key=CANARY))  # installs the filter, teaches it the key
    log = logging.getLogger("streamchat")
    log.warning("plain %s and %r", CANARY, {"auth": f"Bearer {CANARY}"})
    log.warning(f"formatted {MASKED}, key ending in {CANARY[-8:]}, other sk-proj-{'x1' * 20}")
    try:
        raise RuntimeError(f"boom with {CANARY}")
    except RuntimeError:
        log.exception("failed")
    logging.getLogger("openai").warning("the SDK said %s", CANARY)
    text = app_log(caplog)
    assert text.count("[redacted]") >= 6 and "boom with [redacted]" in text
    assert leaks(text) == [] and masked_leaks(text) == [] and "x1x1x1" not in text


def leaky_tool(why: str = "") -> str:
    """A tool whose output carries the key (an environment dump, a debug page)."""
    return f"env: OPENAI_API_KEY={CANARY}; masked {MASKS[0]}"


LEAKY_TOOLS = """
tools:
  - name: leaky
    handler: test_secrets:leaky_tool
"""


@pytest.mark.parametrize("api", APIS)
async def test_a_tool_output_and_arguments_holding_the_key_reach_nothing(
    api: str, canary: Fake, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from conftest import BASE_CONFIG
    from test_tool_loop import answer, ask

    canary.push(ask(api, synth.FunctionCall("leaky", f'{{"why": "{CANARY}"}}', chunks=4)), answer(api, "Done."))
    runtime = Runtime(make_settings(api, url=canary.url, api_key=CANARY, record_dir=tmp_path, config=BASE_CONFIG + LEAKY_TOOLS))
    chat = runtime.new_session()
    values = await run_turn(chat, "use the tool")
    await close(runtime)
    assert chat.last_status == "completed" and "env: OPENAI_API_KEY=[redacted]" in repr(values[-1]), values[-1]
    for where, text in (("UI", repr(values)), ("recording", all_files(tmp_path)), ("log", app_log(caplog))):
        assert leaks(text) == [] and masked_leaks(text) == [], where
