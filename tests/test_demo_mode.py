"""Demo mode's player (``streamchat.demo_mode``) on a fake clock: typing, pauses between
turns at the recorded pace and speed, Pause/Resume/Stop, chapters and looping; the
replay's stream held by a paused clock; and the chat session it drives for real.
Markers in recordings and ``python -m streamchat.recording mark``."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, replay_settings, turn_transcript

from streamchat import replayapi
from streamchat.demo_mode import (
    DEFAULT_GAP,
    LOOP_PAUSE,
    SEND_PAUSE,
    TYPING_MAX,
    Controls,
    Frame,
    Timing,
    play,
    turn_gaps,
)
from streamchat.recording import Marker, add_marker, load_recording, parse_recording
from streamchat.replayapi import ReplayAPI, Script
from streamchat.session import Runtime
from streamchat.sse import RawEvent
from streamchat.testing import synth

MULTI = ROOT / "recordings" / "02-multi-turn.jsonl"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeChat:
    """Answers each message with ``Answer to <message>`` in three growing values, each
    taking ``answer_time`` seconds of the clock; remembers what it was asked."""

    def __init__(self, clock: FakeClock, answer_time: float = 1.0) -> None:
        self.clock = clock
        self.speed = 1.0
        self.answer_time = answer_time
        self.asked: list[tuple[str, int, float]] = []
        self.resets = 0
        self.speeds: list[float] = []
        self.hold: asyncio.Event | None = None
        """When set: the answer waits for it after its first value (to pause or stop mid-answer)."""

    async def reset(self) -> None:
        self.resets += 1

    def set_speed(self, speed: float) -> None:
        self.speeds.append(speed)
        self.speed = speed

    async def turn(self, message: str, history: list[dict[str, Any]], stop: asyncio.Event | None = None) -> AsyncIterator[Any]:
        self.asked.append((message, sum(1 for m in history if m["role"] == "user"), self.speed))
        text = f"Answer to {message}"
        for k, cut in enumerate((len(text) // 3, 2 * len(text) // 3, len(text))):
            if self.speed > 0:
                await self.clock.sleep(self.answer_time / 3 / self.speed)
            if stop is not None and stop.is_set():
                yield text[: len(text) // 3] + " ⏹ Stopped"
                return
            yield text[:cut]
            if k == 0 and self.hold is not None:
                await self.hold.wait()


def recording(prompts: list[str], at: list[float] | None = None, markers: str = "") -> Any:
    turns = [synth.SynthTurn(p, [synth.timed(synth.responses_stream(["ok"]), step=0.1)]) for p in prompts]
    lines = synth.recording_lines("responses", turns, title="t")
    for line in lines:
        if line["kind"] == "turn" and at is not None:
            line["at"] = at[line["turn"]]
    return parse_recording(synth.dump_lines(lines) + markers, name="t")


async def collect(gen: AsyncIterator[Frame], clock: FakeClock) -> list[tuple[float, Frame]]:
    return [(clock.now, frame) async for frame in gen]


def final(frames: list[tuple[float, Frame]]) -> Frame:
    return frames[-1][1]


def users(frame: Frame) -> list[str]:
    return [m["content"] for m in frame.history if m["role"] == "user"]


def answers(frame: Frame) -> list[str]:
    return [m["content"] for m in frame.history if m["role"] == "assistant"]


# -- playing ----------------------------------------------------------------------


async def test_plays_every_turn_typed_sent_and_answered_in_order() -> None:
    clock = FakeClock()
    chat = FakeChat(clock)
    rec = recording(["First question?", "Second one.", "And a third"])
    frames = await collect(play(rec, chat, Controls(clock), sleep=clock.sleep), clock)
    last = final(frames)
    assert last.state == "done"
    assert users(last) == ["First question?", "Second one.", "And a third"]
    assert answers(last) == ["Answer to First question?", "Answer to Second one.", "Answer to And a third"]
    # Each asked at its place in the conversation, once.
    assert [(m, pos) for m, pos, _ in chat.asked] == [("First question?", 0), ("Second one.", 1), ("And a third", 2)]
    assert chat.resets == 1
    # Typed: the message box grows a little at a time to the whole prompt, then empties
    # as the message is sent; the answer grows after.
    drafts = [f.draft for _, f in frames if f.turn == 0 and f.state == "typing"]
    assert len(drafts) >= 5 and drafts[-1] == "First question?"
    assert all(a != b and b.startswith(a) for a, b in itertools.pairwise(drafts))
    states = [f.state for _, f in frames if f.turn == 1]
    assert states.index("sending") > states.index("typing") and states[-1] == "answering"
    assert [f.draft for _, f in frames if f.state != "typing"] == [""] * sum(1 for _, f in frames if f.state != "typing")
    growing = [f.history[-1]["content"] for _, f in frames if f.turn == 2 and f.state == "answering"]
    assert len(growing) == 3 and growing[-1] == "Answer to And a third"


async def test_no_typing_shows_each_prompt_at_once() -> None:
    clock = FakeClock()
    frames = await collect(
        play(recording(["One", "Two"]), FakeChat(clock), Controls(clock), timing=Timing(typing=False), sleep=clock.sleep), clock
    )
    assert not [f for _, f in frames if f.state == "typing" or f.draft]
    assert users(final(frames)) == ["One", "Two"]


async def test_waits_the_recorded_pause_between_turns_capped_and_divided_by_speed() -> None:
    clock = FakeClock()
    chat = FakeChat(clock, answer_time=0.0)
    chat.speed = 2.0
    # Each turn lasts 0.801 s (its end line); turn 1 starts at 1.801 (a 1 s pause after
    # turn 0), turn 2 at 30 (a long pause, capped at max_gap).
    rec = recording(["a", "b", "c"], at=[0.0, 1.801, 30.0])
    assert [t.duration for t in rec.turns] == [pytest.approx(0.801)] * 3
    assert turn_gaps(rec, 2.0) == pytest.approx([0.5, 1.0, 2.0])
    frames = await collect(play(rec, chat, Controls(clock), timing=Timing(typing=False, max_gap=2.0), sleep=clock.sleep), clock)
    sent = [t for t, f in frames if f.state == "sending"]
    assert len(sent) == 3
    # Answers take no time here: the time between two sendings is the pause / speed.
    assert sent[1] - sent[0] == pytest.approx(1.0 / 2)
    assert sent[2] - sent[1] == pytest.approx(2.0 / 2)


async def test_without_recorded_start_times_the_default_pause_is_used() -> None:
    rec = recording(["a", "b"])
    assert rec.turns[0].at is None
    assert turn_gaps(rec, 10.0) == pytest.approx([0.5, DEFAULT_GAP])
    assert turn_gaps(rec, 0.25) == pytest.approx([0.25, 0.25])


async def test_typing_takes_a_human_time_and_long_prompts_are_typed_faster() -> None:
    for prompt, nominal in (("Hi there", 8 * 0.045), ("x" * 500, TYPING_MAX)):
        clock = FakeClock()
        frames = await collect(play(recording([prompt]), FakeChat(clock, 0.0), Controls(clock), sleep=clock.sleep), clock)
        sent = next(t for t, f in frames if f.state == "sending")
        typed = sent - frames[0][0] - 0.5 - SEND_PAUSE  # after the first turn's 0.5 s, before the Enter
        assert nominal * 0.5 <= typed <= nominal * 1.5, (prompt[:10], typed)


async def test_speed_zero_plays_everything_without_waiting() -> None:
    clock = FakeClock()
    chat = FakeChat(clock)
    chat.speed = 0.0
    frames = await collect(play(recording(["a", "b", "c"], at=[0, 5, 9]), chat, Controls(clock), sleep=clock.sleep), clock)
    assert final(frames).state == "done" and len(users(final(frames))) == 3
    assert clock.slept == []


async def test_a_speed_change_applies_to_the_wait_under_way() -> None:
    clock = FakeClock()
    chat = FakeChat(clock, answer_time=0.0)
    rec = recording(["a", "b"], at=[0.0, 2.801])  # a 2 s pause after a's 0.801 s
    marks: dict[str, float] = {}

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if "answered" in marks and "switched" not in marks and clock.now - marks["answered"] >= 1.0 - 1e-9:
            chat.speed, marks["switched"] = 4.0, clock.now  # one second into the pause: 4x

    async for frame in play(rec, chat, Controls(clock), timing=Timing(typing=False, max_gap=5.0), sleep=sleep):
        if frame.turn == 0 and frame.state == "answering" and frame.history[-1]["content"] == "Answer to a":
            marks["answered"] = clock.now
        if frame.turn == 1 and frame.state == "sending":
            marks["sent"] = clock.now
    assert marks["switched"] - marks["answered"] == pytest.approx(1.0)
    # The remaining second of the pause took a quarter of one.
    assert marks["sent"] - marks["answered"] == pytest.approx(1.25)


# -- pause, resume, stop ----------------------------------------------------------


async def spin() -> None:
    """Let every other task run as far as it can (no time passes on the fake clock)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_pause_holds_everything_still_and_resume_completes_it() -> None:
    clock = FakeClock()
    chat = FakeChat(clock)
    controls = Controls(clock)
    rec = recording(["First question?", "Second"])
    frames: list[Frame] = []
    seen: dict[str, int] = {}

    async def consume() -> None:
        async for frame in play(rec, chat, controls, sleep=clock.sleep):
            frames.append(frame)
            if "typing" not in seen and frame.state == "typing" and len(frame.draft) >= 3:
                seen["typing"] = len(frames)
                controls.pause()
            if "answering" not in seen and frame.state == "answering" and frame.turn == 1:
                seen["answering"] = len(frames)
                controls.pause()

    task = asyncio.ensure_future(consume())
    for stage in ("typing", "answering"):
        while stage not in seen:
            await asyncio.sleep(0)
        count, demo_time = len(frames), controls.clock()
        await spin()
        clock.now += 30.0  # time passes outside, not on the demo's clock
        await spin()
        assert len(frames) == count and controls.paused and controls.playing
        assert controls.clock() == demo_time
        controls.resume()
    await task
    assert frames[-1].state == "done"
    assert answers(frames[-1]) == ["Answer to First question?", "Answer to Second"]
    typed = [f.draft for f in frames if f.turn == 0 and f.state == "typing"]
    assert typed[-1] == "First question?" and len(typed) > seen["typing"] - 2  # typing went on where it paused
    assert not controls.playing


async def test_stop_mid_answer_keeps_the_partial_conversation() -> None:
    clock = FakeClock()
    chat = FakeChat(clock)
    controls = Controls(clock)
    frames = []
    async for frame in play(recording(["one", "two", "three"]), chat, controls, sleep=clock.sleep):
        frames.append(frame)
        if frame.state == "answering" and frame.turn == 1:
            controls.stop()
    last = frames[-1]
    assert last.state == "stopped" and last.turn == 1
    assert users(last) == ["one", "two"]
    assert answers(last)[0] == "Answer to one"
    assert answers(last)[1].endswith("⏹ Stopped") and not answers(last)[1].startswith("Answer to two")
    assert [m for m, _, _ in chat.asked] == ["one", "two"]
    assert not controls.playing


async def test_stop_while_paused_or_typing_ends_at_once() -> None:
    clock = FakeClock()
    chat = FakeChat(clock)
    controls = Controls(clock)
    frames = []

    async def consume() -> None:
        async for frame in play(recording(["a long first prompt", "b"]), chat, controls, sleep=clock.sleep):
            frames.append(frame)
            if frame.state == "typing" and len(frame.draft) > 4:
                controls.pause()

    task = asyncio.ensure_future(consume())
    while not controls.paused:
        await asyncio.sleep(0)
    await spin()
    controls.stop()
    await task
    assert frames[-1].state == "stopped" and 4 < len(frames[-1].draft) < len("a long first prompt")
    assert chat.asked == [] and frames[-1].history == []


async def test_end_running_stops_a_demo_and_waits_for_its_end() -> None:
    clock = FakeClock()
    controls = Controls(clock)
    chat = FakeChat(clock)
    chat.hold = asyncio.Event()  # the answer waits mid-way: the demo is surely running
    frames: list[Frame] = []

    async def consume() -> None:
        async for frame in play(recording(["one", "two"]), chat, controls, sleep=clock.sleep):
            frames.append(frame)

    task = asyncio.ensure_future(consume())
    while not [f for f in frames if f.state == "answering"]:
        await asyncio.sleep(0)
    assert controls.playing
    chat.hold.set()
    await controls.end_running()  # what a typed message does first: take over
    assert not controls.playing and frames[-1].state == "stopped"
    await task
    await controls.end_running()  # nothing playing: returns at once


# -- chapters and looping ---------------------------------------------------------


async def test_a_chapter_plays_from_its_turn_after_the_earlier_turns_at_once() -> None:
    clock = FakeClock()
    chat = FakeChat(clock)
    frames = await collect(play(recording(["a", "b", "c"]), chat, Controls(clock), start=2, sleep=clock.sleep), clock)
    # a and b asked at speed 0, at their places; c at the demo's speed.
    assert chat.asked == [("a", 0, 0), ("b", 1, 0), ("c", 2, 1.0)]
    assert chat.speed == 1.0
    first_typing = next(f for _, f in frames if f.state == "typing")
    assert users(first_typing) == ["a", "b"] and answers(first_typing) == ["Answer to a", "Answer to b"]
    assert {f.turn for _, f in frames if f.state in ("typing", "answering")} == {2}
    assert users(final(frames)) == ["a", "b", "c"]


async def test_loop_starts_again_with_a_new_chat_after_a_pause_at_the_end() -> None:
    clock = FakeClock()
    chat = FakeChat(clock)
    controls = Controls(clock)
    frames = []
    async for frame in play(recording(["a", "b"]), chat, controls, timing=Timing(loop=True), sleep=clock.sleep):
        frames.append((clock.now, frame))
        if chat.resets == 2 and frame.state == "sending":
            controls.stop()
    states = [f.state for _, f in frames]
    done = states.index("done")
    assert states[done + 1] == "waiting" and frames[done + 1][1].history == []
    assert frames[done + 1][0] - frames[done][0] == pytest.approx(LOOP_PAUSE)
    assert [m for m, _, _ in chat.asked] == ["a", "b", "a"]
    assert users(frames[-1][1]) == ["a"]


# -- the replay it drives ---------------------------------------------------------


async def test_a_paused_clock_holds_the_replayed_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    base = FakeClock()
    controls = Controls(base)
    polls: list[float] = []

    async def fake_sleep(delay: float) -> None:
        polls.append(delay)
        base.now += delay
        if controls.paused and base.now - paused_at >= 10.0:
            controls.resume()
        await asyncio.sleep(0)

    class Asyncio:
        def __getattr__(self, name: str) -> Any:
            return fake_sleep if name == "sleep" else getattr(asyncio, name)

    monkeypatch.setattr(replayapi, "asyncio", Asyncio())
    events = [(t, RawEvent(None, {"i": i})) for i, t in enumerate([0.0, 1.0, 2.0])]
    core = ReplayAPI(lambda req: Script(events=events), speed=1.0, clock=controls.clock)
    body = {"messages": [{"role": "user", "content": "q"}], "stream": True}
    reply = await core.handle("POST", "/v1/chat/completions", body, {})
    assert reply.stream is not None
    stream = aiter(reply.stream)
    start = base.now
    await anext(stream)
    controls.pause()
    paused_at = base.now
    await anext(stream)
    # Sent ten seconds late by the outside clock, on time by the demo's.
    assert base.now - start >= 1.0 + 10.0
    assert controls.clock() - start == pytest.approx(1.0, abs=0.06)
    assert len(polls) > 100  # it waited in short steps, re-reading the clock
    await anext(stream)
    assert controls.clock() - start == pytest.approx(2.0, abs=0.06)


async def test_plays_a_real_recording_through_the_replay_session_as_typed_turns_would() -> None:
    prompts = load_recording(MULTI).prompts
    assert len(prompts) == 3
    reference = Runtime(replay_settings(MULTI)).new_session()
    history: list[dict[str, Any]] = []
    for prompt in prompts:
        value: Any = None
        async for latest in reference.turn(prompt, history):
            value = latest
        history = [
            *history,
            {"role": "user", "content": prompt},
            *([{"role": "assistant", "content": value}] if isinstance(value, str) else value),
        ]
    session = Runtime(replay_settings(MULTI)).new_session()
    clock = FakeClock()
    frames = await collect(play(load_recording(MULTI), session, Controls(clock), sleep=clock.sleep), clock)
    assert final(frames).state == "done"
    assert final(frames).history == history
    assert users(final(frames)) == prompts


# -- markers ----------------------------------------------------------------------


def test_markers_are_read_as_chapters_and_a_bad_one_is_reported() -> None:
    lines = (
        '{"kind":"marker","turn":2,"label":"The finale"}\n'
        '{"kind":"marker","turn":0,"label":" Start "}\n'
        '{"kind":"marker","turn":7,"label":"nowhere"}\n'
        '{"kind":"marker","turn":1}\n'
    )
    rec = recording(["a", "b", "c"], markers=lines)
    assert rec.markers == [Marker(0, "Start"), Marker(2, "The finale")]
    assert len(rec.problems) == 2
    assert any("unknown turn 7" in p for p in rec.problems) and any("without a label" in p for p in rec.problems)
    assert len(rec.turns) == 3


def run_mark(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamchat.recording", "mark", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_mark_appends_a_marker_and_refuses_a_turn_the_file_does_not_hold(tmp_path: Path) -> None:
    path = tmp_path / "multi.jsonl"
    path.write_bytes(MULTI.read_bytes())
    before = path.read_bytes()
    done = run_mark(str(path), "1", "The follow-up")
    assert done.returncode == 0, done.stderr
    assert path.read_bytes().startswith(before)
    assert path.read_bytes()[len(before) :] == b'{"kind":"marker","turn":1,"label":"The follow-up"}\n'
    assert load_recording(path).markers == [Marker(1, "The follow-up")]
    for bad in ("3", "-1"):
        refused = run_mark(str(path), bad, "nope")
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1 and f"no turn {bad}" in refused.stderr and "0 to 2" in refused.stderr
    assert load_recording(path).markers == [Marker(1, "The follow-up")]
    add_marker(path, 0, "Start")
    assert load_recording(path).markers == [Marker(0, "Start"), Marker(1, "The follow-up")]


# -- the terminal chat --------------------------------------------------------------


def test_cli_play_types_each_prompt_and_shows_its_recorded_answer_in_order() -> None:
    import pexpect
    from browser_helpers import app_env

    rec = load_recording(MULTI)

    async def recorded_answers() -> list[str]:
        session, history, out = Runtime(replay_settings(MULTI)).new_session(), [], []
        for prompt in rec.prompts:
            out.append((await turn_transcript(session, prompt, history)).text)
            history += [{"role": "user", "content": prompt}, {"role": "assistant", "content": out[-1]}]
        return out

    answers = asyncio.run(recorded_answers())
    child = pexpect.spawn(
        sys.executable,
        ["app.py", "--cli", "--replay", str(MULTI), "--play", "--speed", "2"],
        cwd=str(ROOT),
        env=app_env({}),
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
        dimensions=(40, 200),
    )
    chunks: list[tuple[float, str]] = []
    try:
        while True:
            try:
                chunks.append((time.monotonic(), child.read_nonblocking(4096, timeout=60)))
            except pexpect.EOF:
                break
        child.close()
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert child.exitstatus == 0
    text = "".join(c for _, c in chunks).replace("\r\n", "\n")
    assert text.rstrip().endswith("(end of the recording)")
    # Each prompt after "> ", in order, each followed by its recorded answer.
    at = 0
    for prompt, answer in zip(rec.prompts, answers, strict=True):
        at = text.index(f"> {prompt}\n", at)
        assert text.index(answer, at) == at + len(f"> {prompt}\n")
    assert text.count("> ") == len(rec.turns)
    # Typed: a prompt reached the terminal in several writes, not one.
    first = rec.turns[0].user
    typing = [c for _, c in chunks if c and c.strip() and c.strip() in first and c.strip() != first]
    assert len(typing) >= 3, chunks[:10]


def test_demo_flags_and_their_variables() -> None:
    from streamchat.options import settings_from

    settings, _ = settings_from([], {})
    assert (settings.autoplay, settings.typing, settings.play) == (False, True, False)
    settings, _ = settings_from(["--autoplay", "--no-typing", "--cli", "--play"], {})
    assert (settings.autoplay, settings.typing, settings.play) == (True, False, True)
    settings, _ = settings_from([], {"STREAMCHAT_AUTOPLAY": "1", "STREAMCHAT_NO_TYPING": "yes"})
    assert (settings.autoplay, settings.typing) == (True, False)
    settings, _ = settings_from([], {"STREAMCHAT_AUTOPLAY": "0", "STREAMCHAT_NO_TYPING": "off"})
    assert (settings.autoplay, settings.typing) == (False, True)
