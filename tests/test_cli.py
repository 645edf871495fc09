"""`python app.py --cli`, the seed's terminal chat, driven through a pseudo-terminal.

Replay: a bundled prompt's answer streams in (several writes spread over time, at the
recording's own pace), and `q` exits 0. Live, against the fake server with the
assistants backend: Ctrl-C, at the prompt or mid-answer, ends the program, and the
fake server has seen the thread and the assistant deleted (and the run cancelled).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pexpect
import pytest
from browser_helpers import ROOT, app_env
from conftest import TEST_KEY, Fake, replay_settings, turn_transcript

from streamchat.recording import load_recording
from streamchat.replayapi import Script
from streamchat.session import Runtime
from streamchat.testing import synth

WELCOME = ROOT / "recordings" / "01-welcome.jsonl"
TIMEOUT = 60


def spawn(env: dict[str, str]) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["app.py", "--cli"],
        cwd=str(ROOT),
        env=app_env(env),
        encoding="utf-8",
        codec_errors="replace",
        timeout=TIMEOUT,
        dimensions=(40, 200),
    )
    return child


@pytest.fixture
def children() -> Iterator[list[pexpect.spawn]]:
    spawned: list[pexpect.spawn] = []
    yield spawned
    for child in spawned:
        if child.isalive():
            child.terminate(force=True)


def read_until_prompt(child: pexpect.spawn) -> list[tuple[float, str]]:
    """Every read from the terminal, timed, until the next "> " prompt."""
    chunks: list[tuple[float, str]] = []
    while not "".join(c for _, c in chunks).endswith("> "):
        chunks.append((time.monotonic(), child.read_nonblocking(4096, timeout=TIMEOUT)))
    return chunks


async def test_replay_streams_a_bundled_answer_and_q_quits(children: list[pexpect.spawn]) -> None:
    prompt = load_recording(WELCOME).prompts[0]
    session = Runtime(replay_settings(WELCOME)).new_session()
    answer = (await turn_transcript(session, prompt)).text
    assert len(answer) > 80

    child = spawn({"STREAMCHAT_REPLAY": str(WELCOME), "STREAMCHAT_SPEED": "1"})
    children.append(child)
    child.expect_exact("> ")
    assert prompt in child.before  # the banner lists what can be asked
    child.sendline(prompt)
    chunks = read_until_prompt(child)
    text = "".join(c for _, c in chunks).replace("\r\n", "\n")
    assert answer in text
    # It streamed: the answer came in many writes, spread over its recorded duration.
    start = text.index(answer[:10])
    pieces = [t for t, c in chunks if c.strip() and text.find(c.replace("\r\n", "\n")) >= start]
    assert len(pieces) >= 5, chunks
    assert pieces[-1] - pieces[0] > 0.3, chunks
    child.sendline("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def live_env(fake: Fake) -> dict[str, str]:
    return {"OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": fake.url, "STREAMCHAT_BACKEND": "assistants"}


def assert_cleaned_up(fake: Fake) -> None:
    core = fake.core
    assert core.live_objects("thread") == []
    assert core.live_objects("assistant") == []
    assert core.requests("DELETE", "/threads/")
    assert core.requests("DELETE", "/assistants/")


def test_live_ctrl_c_at_the_prompt_deletes_thread_and_assistant(fake: Fake, children: list[pexpect.spawn]) -> None:
    child = spawn(live_env(fake))
    children.append(child)
    child.expect_exact("> ")
    child.sendline("hello there")
    child.expect_exact("Echo: hello there")
    child.expect_exact("> ")
    assert len(fake.core.live_objects("thread")) == 1
    assert len(fake.core.live_objects("assistant")) == 1
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert_cleaned_up(fake)


def test_live_ctrl_c_mid_answer_stops_it_and_cleans_up(fake: Fake, children: list[pexpect.spawn]) -> None:
    long = "word " * 200
    events = synth.timed(synth.assistants_stream(synth.split_text(long, 5)), step=0.05)
    fake.push(Script(events=events))
    fake.core.speed = 1.0  # 10 s of answer: Ctrl-C comes long before its end
    child = spawn(live_env(fake))
    children.append(child)
    child.expect_exact("> ")
    child.sendline("talk for a while")
    child.expect_exact("word word word")
    child.sendintr()
    child.expect_exact("Stopped")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert long.strip() not in child.before
    assert_cleaned_up(fake)
    assert fake.core.requests("POST", "/cancel"), " ".join(f"{r.event}:{r.method}:{r.path}" for r in fake.core.log)
