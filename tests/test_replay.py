"""Replay: live and replayed sessions yield the same UI values; bad recordings are
reported while the others keep playing; prompts are matched to the right turn; events
are scheduled at t / speed from one start time, with long gaps capped."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Fake, make_settings, replay_settings, run_turn, text_script, turn_transcript

from streamchat import replayapi
from streamchat.recording import (
    RecordedStream,
    RecordedTurn,
    Recording,
    RecordingError,
    RecordingWriter,
    header,
    load_recording,
    parse_recording,
)
from streamchat.replay import MAX_GAP, Library, Player, capped, normalize
from streamchat.replayapi import ReplayAPI, Script, TurnRequest
from streamchat.session import ChatSession, Runtime
from streamchat.sse import RawEvent
from streamchat.testing import synth

BUNDLED = ROOT / "recordings"
WELCOME = BUNDLED / "01-welcome.jsonl"
APIS = ["responses", "assistants", "chat"]


def history_after(history: list[dict[str, Any]], message: str, final: Any) -> list[dict[str, Any]]:
    """The ChatInterface history once a turn has ended with ``final``."""
    reply = [{"role": "assistant", "content": final}] if isinstance(final, str) else list(final)
    return [*history, {"role": "user", "content": message}, *reply]


async def run_session(session: ChatSession, messages: list[str]) -> list[list[Any]]:
    """Every UI value of every turn, the history carried from turn to turn."""
    history: list[dict[str, Any]] = []
    out = []
    for message in messages:
        values = await run_turn(session, message, history)
        out.append(values)
        history = history_after(history, message, values[-1])
    return out


def failing_script(api: str, text: str) -> Script:
    """Part of an answer, then the provider's in-band error or failure."""
    deltas = synth.split_text(text, 3)
    if api == "responses":
        events = synth.responses_stream(deltas, end="error", error={"code": "server_error", "message": "Overloaded."})
    elif api == "assistants":
        events = synth.assistants_stream(deltas, end="failed")
    else:
        events = synth.chat_stream(deltas, error={"code": "server_error", "message": "Overloaded."})
    return Script(events=synth.timed(events, step=0))


MESSAGES = ["Hello there!", "日本語で答えて 🎌", "hello there", "And then?"]


@pytest.mark.parametrize("api", APIS)
async def test_round_trip_live_and_replay_yield_identical_ui_values(api: str, fake: Fake, tmp_path: Path) -> None:
    answers = {
        0: "Hi! Here is a **first** answer.",
        1: "はい、日本語で答えます。絵文字も 🎌🗾 大丈夫です。",
        2: "Hello again: the same prompt, a different turn.",
    }

    def responder(req: TurnRequest) -> Script:
        if req.position == 3:
            return failing_script(req.api, "This one breaks half")
        return text_script(req.api, answers[req.position], size=3)

    fake.responder = responder
    live = Runtime(make_settings(api, url=fake.url, record_dir=tmp_path))
    session = live.new_session()
    live_values = await run_session(session, MESSAGES)
    await session.close()
    assert [values[-1] for values in live_values[:3]] == [answers[0], answers[1], answers[2]]
    assert all(len(values) > 3 for values in live_values)  # it streamed
    assert live_values[3][-1] != live_values[3][0]

    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1
    recording = load_recording(files[0])
    assert recording.problems == []
    assert recording.api == api
    assert [turn.status for turn in recording.turns] == ["completed", "completed", "completed", "failed"]

    replay = Runtime(replay_settings(files[0]))
    assert replay.recordings == [files[0].stem]
    replay_values = await run_session(replay.new_session(), MESSAGES)
    assert replay_values == live_values


async def test_round_trip_with_a_tool_loop_replays_recorded_outputs(fake: Fake, tmp_path: Path) -> None:
    """Two streams in one turn, and a tool output: replay never runs the tool again."""
    call = synth.FunctionCall("get_time", '{"timezone": "Asia/Tokyo"}', call_id="call_rt1")
    fake.push(
        Script(events=synth.timed(synth.chat_stream(calls=[call], finish_reason="tool_calls"), step=0)),
        text_script("chat", "It is noon in Tokyo."),
    )
    config = """
name: T
instructions: Be brief.
model: test-model
backend: chat
tools:
  - name: get_time
    description: time
    handler: streamchat.demo_tools:get_time
    parameters: {type: object, properties: {timezone: {type: string}}, required: [timezone]}
"""
    live = Runtime(make_settings("chat", url=fake.url, record_dir=tmp_path, config=config))
    live_t = await turn_transcript(live.new_session(), "What time is it in Tokyo?")
    assert live_t.status == "completed" and "noon" in live_t.text

    path = next(tmp_path.glob("*.jsonl"))
    turn = load_recording(path).turns[0]
    assert len(turn.streams) == 2
    assert list(turn.tool_outputs) == ["call_rt1"]

    replay = Runtime(replay_settings(path))
    replay_t = await turn_transcript(replay.new_session(), "What time is it in Tokyo?")
    assert replay_t.snapshot() == live_t.snapshot()  # the recorded tool output, not a new run


# -- bad input: a clear message, the other recordings still served ----------------


def folder_with(tmp_path: Path, **bad: str) -> Path:
    """A recordings folder holding a good recording (welcome) and the given files."""
    folder = tmp_path / "recs"
    folder.mkdir()
    shutil.copy(WELCOME, folder / "good.jsonl")
    for name, text in bad.items():
        (folder / f"{name}.jsonl").write_text(text, encoding="utf-8")
    return folder


async def assert_good_still_served(runtime: Runtime) -> None:
    assert "good" in runtime.recordings
    session = runtime.new_session("good")
    transcript = await turn_transcript(session, "Hello! What can you do?")
    assert transcript.status == "completed"
    assert transcript.text.startswith("Hi! I stream my answers")


def welcome_lines() -> list[str]:
    return WELCOME.read_text(encoding="utf-8").splitlines(keepends=True)


async def test_unknown_format_version_is_refused_by_name(tmp_path: Path) -> None:
    lines = welcome_lines()
    lines[0] = lines[0].replace('"version":1', '"version":99')
    folder = folder_with(tmp_path, future="".join(lines))
    runtime = Runtime(replay_settings(folder))
    assert "future" not in runtime.recordings
    assert any("future" in p and "version 99 is not supported" in p for p in runtime.library.problems)  # type: ignore[union-attr]
    await assert_good_still_served(runtime)


async def test_not_a_recording_and_missing_header_are_refused(tmp_path: Path) -> None:
    lines = welcome_lines()
    folder = folder_with(tmp_path, other='{"kind":"header","format":"asciicast","version":1}\n', headless="".join(lines[1:]))
    runtime = Runtime(replay_settings(folder))
    problems = "\n".join(runtime.library.problems)  # type: ignore[union-attr]
    assert "other: not a streamchat-recording file" in problems
    assert "headless: line 1: expected the header first" in problems
    assert runtime.recordings == ["good"]
    await assert_good_still_served(runtime)


async def test_corrupt_line_is_reported_by_number_and_the_rest_replayed(tmp_path: Path) -> None:
    lines = welcome_lines()
    deltas = [n for n, line in enumerate(lines) if "output_text.delta" in line]
    broken_at = deltas[2]
    lines[broken_at] = lines[broken_at][: len(lines[broken_at]) // 2] + "\n"
    folder = folder_with(tmp_path, corrupt="".join(lines))
    runtime = Runtime(replay_settings(folder))
    assert runtime.recordings == ["corrupt", "good"]
    recording = runtime.library.load("corrupt")  # type: ignore[union-attr]
    assert recording.problems == [f"line {broken_at + 1}: not valid JSON, skipped"]
    transcript = await turn_transcript(runtime.new_session("corrupt"), "Hello! What can you do?")
    assert transcript.status == "completed"
    events = parse_recording("".join(welcome_lines())).turns[0].streams[0].events
    kept = [
        raw.data["delta"] for n, (_, raw) in enumerate(events, 2) if raw.event == "response.output_text.delta" and n != broken_at
    ]
    full = "".join(raw.data["delta"] for _, raw in events if raw.event == "response.output_text.delta")
    # The skipped delta's text is lost from the stream, but the answer is repaired from
    # the provider's final text (response.output_text.done; issue 11).
    assert "".join(kept) != full
    assert transcript.text == full


async def test_missing_file_is_reported_and_the_others_still_served(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such file or folder"):
        Library(tmp_path / "nowhere.jsonl")
    with pytest.raises(RecordingError, match="no such recording"):
        load_recording(tmp_path / "nowhere.jsonl")
    folder = folder_with(tmp_path, gone="")
    library = Library(folder)
    (folder / "gone.jsonl").unlink()  # listed, then removed before it was loaded
    assert library.playable() == ["good"]
    assert "gone: no such recording" in library.problems


async def test_truncated_files_never_crash(tmp_path: Path) -> None:
    data = (BUNDLED / "03-frieza-japanese.jsonl").read_bytes()  # multibyte text: cuts land mid-character
    cuts = sorted(set(range(0, 600)) | set(range(600, len(data), 97)) | {len(data) - 1})
    replayed = 0
    for cut in cuts:
        path = tmp_path / f"cut{cut}.jsonl"
        path.write_bytes(data[:cut])
        try:
            recording = load_recording(path)
        except RecordingError as exc:
            assert "cut" in str(exc)  # names the file
            continue
        assert all(p.startswith("line ") for p in recording.problems)
        if recording.turns and cut % 7 == 0 and replayed < 25:
            replayed += 1
            runtime = Runtime(replay_settings(path))
            transcript = await turn_transcript(runtime.new_session(), recording.turns[0].user)
            assert transcript.status in ("completed", "interrupted")
            if recording.turns[0].status == "interrupted":
                assert transcript.status == "interrupted"  # a cut turn is never shown as complete
    assert replayed >= 10


async def test_unknown_kinds_and_header_keys_are_skipped(tmp_path: Path) -> None:
    lines = welcome_lines()
    lines[0] = lines[0].replace('"kind":"header",', '"kind":"header","future_key":{"x":1},')
    lines.insert(2, '{"kind":"marker","turn":0,"t":0.1,"label":"chapter 1"}\n')
    lines.insert(
        5,
        '{"kind":"event","turn":0,"stream":0,"t":0.2,"event":"response.future_thing","data":{"type":"response.future_thing"},"extra":1}\n',
    )
    folder = folder_with(tmp_path, newer="".join(lines))
    runtime = Runtime(replay_settings(folder))
    recording = runtime.library.load("newer")  # type: ignore[union-attr]
    assert recording.problems == []
    assert recording.header["future_key"] == {"x": 1}
    newer = await turn_transcript(runtime.new_session("newer"), "Hello! What can you do?")
    good = await turn_transcript(runtime.new_session("good"), "Hello! What can you do?")
    assert newer.snapshot() == good.snapshot()


async def test_names_outside_the_folder_are_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path)
    (tmp_path / "secret.jsonl").write_bytes(WELCOME.read_bytes())
    library = Library(folder)
    for name in ("../secret", "../x", str(tmp_path / "secret"), "good.jsonl", "/etc/passwd", ""):
        with pytest.raises(RecordingError, match="not one of the listed recordings"):
            library.load(name)
    runtime = Runtime(replay_settings(folder))
    await assert_good_still_served(runtime)


async def test_symlinks_are_not_listed(tmp_path: Path) -> None:
    folder = folder_with(tmp_path)
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(WELCOME.read_bytes())
    (folder / "link.jsonl").symlink_to(outside)
    (folder / "odd name!.jsonl").write_bytes(WELCOME.read_bytes())
    runtime = Runtime(replay_settings(folder))
    assert runtime.recordings == ["good"]
    problems = runtime.library.problems  # type: ignore[union-attr]
    assert "link.jsonl: not a plain file, skipped" in problems
    assert "odd name!.jsonl: unusual file name, skipped" in problems
    with pytest.raises(RecordingError, match="not a plain file or folder"):
        Library(folder / "link.jsonl")
    await assert_good_still_served(runtime)


# -- matching -----------------------------------------------------------------------


def recording_of(*prompts: str, name: str = "rec") -> Recording:
    turns = [
        RecordedTurn(index=i, user=p, streams=[RecordedStream([(0.0, RawEvent(None, {"n": i}))])], status="completed")
        for i, p in enumerate(prompts)
    ]
    return Recording(header=header("chat", "m", "x"), turns=turns, name=name)


def test_normalize_ignores_case_width_spacing_and_final_punctuation() -> None:
    assert normalize("  Hello,   WORLD!! ") == normalize("hello, world") == "hello, world"
    assert normalize("ＡＢＣ？") == normalize("abc") == "abc"  # full width
    assert normalize("自己紹介してください。") == normalize("自己紹介してください")
    assert normalize("hello, world") != normalize("hello world")  # inner punctuation counts


def test_match_uses_position_for_repeated_prompts() -> None:
    player = Player(recording_of("Hi", "Tell me more.", "hi!", "Bye"))
    assert player.match("HI", 0).index == 0  # type: ignore[union-attr]
    assert player.match("hi", 2).index == 2  # type: ignore[union-attr]
    assert player.match("hi", 1).index == 2  # type: ignore[union-attr]  # the next one after
    assert player.match("hi", 7).index == 2  # type: ignore[union-attr]  # past the end: the last
    assert player.match("tell me more", 0).index == 1  # type: ignore[union-attr]
    assert player.match("Tell me less", 1) is None


def test_unmatched_request_gets_a_404_listing_the_prompts_never_an_answer() -> None:
    player = Player(recording_of("Hi", "Tell me more.", "hi", name="demo"))
    script = player(TurnRequest("chat", "What is the weather?", 0, 0, {}))
    assert script.status == 404 and script.events == []
    message = script.error["message"]  # type: ignore[index]
    assert "“demo”" in message and "What is the weather?" in message
    assert "- Hi\n- Tell me more.\n- hi" in message
    matched = player(TurnRequest("chat", "tell me more", 1, 0, {}))
    assert matched.status == 200 and matched.events[0][1].data == {"n": 1}


async def test_multi_turn_recording_replays_turn_by_turn() -> None:
    path = BUNDLED / "02-multi-turn.jsonl"
    recording = load_recording(path)
    runtime = Runtime(replay_settings(path))
    values = await run_session(runtime.new_session(), recording.prompts)
    finals = [turn_values[-1] for turn_values in values]
    expected = [
        "".join(raw.data["delta"] for _, raw in turn.streams[0].events if raw.event == "response.output_text.delta")
        for turn in recording.turns
    ]
    assert finals == expected
    assert len(set(finals)) == 3


async def test_unmatched_message_in_the_app_lists_what_can_be_asked() -> None:
    path = BUNDLED / "02-multi-turn.jsonl"
    recording = load_recording(path)
    runtime = Runtime(replay_settings(path))
    session = runtime.new_session()
    values = await run_turn(session, "What is the capital of France?")
    assert len(values) == 1 and isinstance(values[0], str)
    reply = values[0]
    for prompt in recording.prompts:
        assert f"- {prompt}" in reply
    assert "Miso" not in reply and "Tofu" not in reply  # no recorded answer leaks in
    assert (
        session.playback is not None and session.playback.core is not None and session.playback.core.requests() == []
    )  # nothing was replayed


# -- timing ------------------------------------------------------------------------


def test_capped_shortens_long_silences_only() -> None:
    assert capped([0.5, 1.0, 10.0, 10.5], 2.0) == [0.5, 1.0, 3.0, 3.5]
    assert capped([5.0, 5.1], 2.0) == [2.0, 2.1]  # a long wait for the first event too
    assert capped([0.1, 0.2, 0.3], 2.0) == [0.1, 0.2, 0.3]
    assert capped([], 2.0) == []
    assert MAX_GAP == 2.0  # the documented default (docs/recording-format.md)


def test_player_caps_gaps_across_the_streams_of_a_turn() -> None:
    def stream(*ts: float) -> RecordedStream:
        return RecordedStream([(t, RawEvent(None, {"t": t})) for t in ts])

    turn = RecordedTurn(index=0, user="q", streams=[stream(0.1, 0.3), stream(9.3, 9.4)], status="completed")
    player = Player(Recording(header=header("chat", "m", "x"), turns=[turn]), max_gap=1.0)
    first = player(TurnRequest("chat", "q", 0, 0, {}))
    second = player(TurnRequest("chat", "q", 0, 1, {}))
    assert [t for t, _ in first.events] == [0.1, 0.3]
    assert [t for t, _ in second.events] == [1.3, 1.4]  # the 9 s tool run became 1 s
    assert player(TurnRequest("chat", "q", 0, 2, {})).status == 409


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fake_sleeps(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, oversleep: float = 0.0) -> list[float]:
    """Make the fake API's sleeps advance ``clock`` instead of waiting (each one waking
    ``oversleep`` late); returns the list of requested delays. Only ``replayapi`` sees
    the fake: other threads' event loops keep the real ``asyncio.sleep``."""
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        clock.now += delay + oversleep
        await asyncio.sleep(0)

    class Asyncio:
        def __getattr__(self, name: str) -> Any:
            return fake_sleep if name == "sleep" else getattr(asyncio, name)

    monkeypatch.setattr(replayapi, "asyncio", Asyncio())
    return delays


async def paced_delays(
    monkeypatch: pytest.MonkeyPatch, speed: float, offsets: list[float], oversleep: float
) -> tuple[list[float], list[float], float]:
    """Stream a chat script through the fake API with a fake clock; return the
    requested sleeps, the clock at each frame, and the start time."""
    clock = FakeClock()
    delays = fake_sleeps(monkeypatch, clock, oversleep)
    events = [(t, RawEvent(None, {"i": i})) for i, t in enumerate(offsets)]
    core = ReplayAPI(lambda req: Script(events=events), speed=speed, clock=clock)
    start = clock.now
    body = {"messages": [{"role": "user", "content": "q"}], "stream": True}
    reply = await core.handle("POST", "/v1/chat/completions", body, {})
    assert reply.stream is not None
    times = []
    async for _ in reply.stream:
        times.append(clock.now)
    return delays, times, start


async def test_pacing_schedules_each_event_at_t_over_speed_from_one_start(monkeypatch: pytest.MonkeyPatch) -> None:
    offsets = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    delays, times, start = await paced_delays(monkeypatch, 2.0, offsets, oversleep=0.01)
    # Each frame leaves at most one oversleep after its slot: late wake-ups do not add up.
    for t, sent in zip(offsets, times, strict=True):
        assert start + t / 2.0 <= sent <= start + t / 2.0 + 0.01 + 1e-9
    # Each delay is measured from the start: it makes up for the previous late wake-up.
    assert delays == pytest.approx([0.25] + [0.25 - 0.01] * 6)


async def test_speed_zero_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    delays, times, start = await paced_delays(monkeypatch, 0.0, [0.0, 5.0, 50.0], oversleep=0.0)
    assert delays == [] and times and set(times) == {start}  # at speed 0, frames go in chunks


async def test_replay_session_paces_through_the_player_caps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A session's speed and max gap reach the fake API: a 30 s silence in the
    recording costs max_gap / speed."""
    clock = FakeClock()
    path = tmp_path / "slow.jsonl"
    writer = RecordingWriter(path, header("chat", "m", "x"), clock=clock)
    writer.begin_turn("q")
    writer.stream_started()
    for t in (0.0, 30.0):
        clock.now = 100.0 + t
        writer.event(RawEvent(None, {"choices": [{"index": 0, "delta": {"content": f"{t:g} "}}]}))
    writer.event(RawEvent(None, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    writer.event(RawEvent(None, "[DONE]"))
    writer.end_turn("completed")
    writer.close()

    session = Runtime(replay_settings(path, speed=4.0, max_gap=1.5)).new_session()
    session.backend  # noqa: B018  (builds the session's fake API)
    assert session.playback is not None and session.playback.core is not None
    session.playback.core.clock = clock
    delays = fake_sleeps(monkeypatch, clock)
    transcript = await turn_transcript(session, "q")
    assert transcript.text == "0 30 " and transcript.status == "completed"
    assert sum(delays) == pytest.approx(1.5 / 4.0)
