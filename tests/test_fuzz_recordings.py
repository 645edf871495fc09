"""Fuzzed recordings: bundled files truncated at many byte offsets and with random
lines corrupted (seeded). Loading never crashes, every damaged line is reported by
number (and the app logs it), and what is valid replays exactly as before.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, replay_settings, run_turn

from streamchat.recording import Recording, RecordingError, load_recording, parse_recording
from streamchat.session import Runtime

SOURCES = [
    "02-multi-turn.jsonl",  # responses, three turns in one conversation
    "05-interrupted-error.jsonl",  # responses, a failed turn
    "06-backend-chat.jsonl",
    "07-backend-assistants.jsonl",
    "10-tool-call-chat.jsonl",  # two streams and a recorded tool output
    "09-tool-call-assistants.jsonl",
]
REPLAYS_PER_SOURCE = 12
"""Truncations replayed end to end per source (every truncation is parsed)."""


@dataclass
class Reference:
    """A bundled recording and what replaying it shows, turn by turn."""

    data: bytes
    recording: Recording
    finals: list[Any]
    statuses: list[str | None]


def answer_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join(m["content"] for m in value if not m.get("metadata"))


async def replay_all(path: Path, prompts: list[str]) -> tuple[list[Any], list[str | None]]:
    """Every prompt through one replay session at speed 0, history carried."""
    runtime = Runtime(replay_settings(path))
    chat = runtime.new_session()
    history: list[dict[str, Any]] = []
    finals, statuses = [], []
    for prompt in prompts:
        values = await run_turn(chat, prompt, history)
        finals.append(values[-1])
        statuses.append(chat.last_status)
        reply = [{"role": "assistant", "content": values[-1]}] if isinstance(values[-1], str) else values[-1]
        history = [*history, {"role": "user", "content": prompt}, *reply]
    await runtime.shutdown()
    return finals, statuses


_references: dict[str, Reference] = {}


async def reference(name: str, tmp_path: Path) -> Reference:
    if name not in _references:
        data = (ROOT / "recordings" / name).read_bytes()
        recording = parse_recording(data.decode("utf-8"))
        assert recording.problems == []
        path = tmp_path / f"ref-{name}"
        path.write_bytes(data)
        finals, statuses = await replay_all(path, recording.prompts)
        _references[name] = Reference(data, recording, finals, statuses)
    return _references[name]


def line_ends(data: bytes) -> list[int]:
    """Byte offset just past each line's newline."""
    return [i + 1 for i, b in enumerate(data) if b == 0x0A]


# -- truncation ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SOURCES)
async def test_truncated_anywhere(name: str, tmp_path: Path) -> None:
    ref = await reference(name, tmp_path)
    data = ref.data
    ends = line_ends(data)
    objects = [json.loads(line) for line in data.splitlines()]
    # A turn survives a cut when its `end` line is whole (its newline may be gone).
    end_line = {o["turn"]: n for n, o in enumerate(objects) if o["kind"] == "end"}
    rng = random.Random(name)
    cuts = {0, 1, len(data) - 1}
    for end in ends:
        cuts |= {end - 2, end - 1, end, end + 1}  # inside the JSON, before / after the newline, into the next
    cuts |= {rng.randrange(len(data)) for _ in range(60)}
    cuts = {c for c in cuts if 0 <= c < len(data)}
    replay_at = set(rng.sample(sorted(c for c in cuts if c > ends[1]), REPLAYS_PER_SOURCE))
    replayed = 0

    for cut in sorted(cuts):
        piece = data[:cut]
        try:
            recording = parse_recording(piece.decode("utf-8", errors="replace"), name="cut")
        except RecordingError as exc:
            assert cut < ends[0] - 1, (cut, exc)  # only a damaged header refuses the whole file
            assert "cut" in str(exc)
            continue
        # A last line cut inside its JSON is reported by its number; nothing else is.
        start = piece.rfind(b"\n") + 1
        partial, whole = piece[start:], data[start : data.index(b"\n", start)]
        if partial.strip() and partial != whole:
            number = piece.count(b"\n") + 1
            assert recording.problems == [f"line {number}: not valid JSON, skipped"], cut
        else:
            assert recording.problems == [], cut

        survived = {i for i, n in end_line.items() if ends[n] - 1 <= cut}
        for turn in recording.turns:
            original = ref.recording.turns[turn.index]
            if turn.index in survived:
                assert turn == original, (cut, turn.index)  # exactly as it was
            else:
                assert turn.status == "interrupted"  # no `end`: cut off, and read as such
                for got, was in zip(turn.streams, original.streams, strict=False):
                    assert got.events == was.events[: len(got.events)]

        if cut not in replay_at or not recording.turns:
            continue
        replayed += 1
        path = tmp_path / f"cut{cut}.jsonl"
        path.write_bytes(piece)
        finals, statuses = await replay_all(path, [t.user for t in recording.turns])
        for turn, final, status in zip(recording.turns, finals, statuses, strict=True):
            if turn.index in survived:
                assert final == ref.finals[turn.index], (cut, turn.index)  # replays as the whole file did
                assert status == ref.statuses[turn.index]
            else:
                # A cut turn shows a prefix of its answer, and is never "completed"
                # unless all of the answer made it.
                full, shown = answer_text(ref.finals[turn.index]), answer_text(final)
                assert full.startswith(shown), (cut, shown, full)
                assert status != "completed" or shown == full, (cut, status)
    assert replayed == REPLAYS_PER_SOURCE


# -- corrupted lines ----------------------------------------------------------------

Mutation = Callable[[dict[str, Any], random.Random], bytes]


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _cut_json(obj: dict[str, Any], rng: random.Random) -> bytes:
    line = _json(obj)
    return line[: rng.randrange(1, len(line) - 1)]


MUTATIONS: dict[str, tuple[tuple[str, ...], Mutation]] = {
    # name: (kinds it applies to, what the line becomes)
    "cut-json": (("turn", "event", "tool_output", "end"), _cut_json),
    "binary": (("turn", "event", "tool_output", "end"), lambda o, r: b"\xff\xfe\x00" + _json(o)),
    "nul": (("turn", "event", "tool_output", "end"), lambda o, r: b"\x00" * r.randrange(1, 9)),
    "array": (("turn", "event", "tool_output", "end"), lambda o, r: _json([o])),
    "scalar": (("turn", "event", "tool_output", "end"), lambda o, r: r.choice([b"42", b"null", b'"text"', b"true"])),
    "no-turn": (("turn", "event", "tool_output", "end"), lambda o, r: _json({k: v for k, v in o.items() if k != "turn"})),
    "turn-as-text": (("turn", "event", "tool_output", "end"), lambda o, r: _json({**o, "turn": str(o["turn"])})),
    "bad-time": (("event", "tool_output", "end"), lambda o, r: _json({**o, "t": r.choice([-1, "soon", None, [1]])})),
    "bad-stream": (("event",), lambda o, r: _json({**o, "stream": r.choice([-1, 99, "0", 1.5])})),
    "bad-status": (("end",), lambda o, r: _json({**o, "status": r.choice(["exploded", 3, None])})),
    "bad-user": (("turn",), lambda o, r: _json({**o, "user": r.choice([None, 5, ["hi"]])})),
    "bad-tool-output": (("tool_output",), lambda o, r: _json({**o, "output": {"not": "text"}})),
}


@pytest.mark.parametrize("name", SOURCES)
async def test_corrupted_lines_are_reported_and_the_rest_replays(
    name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ref = await reference(name, tmp_path)
    lines = ref.data.decode("utf-8").splitlines(keepends=True)
    objects = [json.loads(line) for line in lines]
    rng = random.Random(f"corrupt-{name}")
    folder = tmp_path / "corrupt"
    folder.mkdir()
    trials: dict[str, tuple[set[int], set[int]]] = {}
    for trial in range(40):
        damaged: dict[int, bytes] = {}
        for _ in range(rng.choice([1, 1, 2, 3])):
            number = rng.randrange(2, len(lines) + 1)  # 1-based; the header (line 1) stays
            obj = objects[number - 1]
            options = [m for kinds, m in MUTATIONS.values() if obj["kind"] in kinds]
            damaged[number] = rng.choice(options)(obj, rng) + b"\n"
        out = b"".join(damaged.get(n, line.encode("utf-8")) for n, line in enumerate(lines, 1))
        stem = f"t{trial:02d}"
        (folder / f"{stem}.jsonl").write_bytes(out)
        touched = {objects[n - 1]["turn"] for n in damaged}
        trials[stem] = (set(damaged), touched)

        recording = load_recording(folder / f"{stem}.jsonl")  # never raises: the header is intact
        for number in damaged:
            assert any(p.startswith(f"line {number}:") for p in recording.problems), (stem, number, recording.problems)

    # The app loads them all, and logs each damaged line by file and number.
    caplog.set_level(logging.WARNING, logger="streamchat")
    runtime = Runtime(replay_settings(folder))
    assert sorted(runtime.recordings) == sorted(trials)
    for stem, (numbers, _) in trials.items():
        for number in numbers:
            assert f"{stem}: line {number}:" in caplog.text, (stem, number)

    # Turns no damage touched replay exactly as the intact file does; the others end.
    for stem in rng.sample(sorted(trials), 10):
        _, touched = trials[stem]
        finals, statuses = await replay_all(folder / f"{stem}.jsonl", ref.recording.prompts)
        for index, (final, status) in enumerate(zip(finals, statuses, strict=True)):
            if index not in touched:
                assert final == ref.finals[index], (stem, index)
                assert status == ref.statuses[index]
            else:
                assert final, (stem, index)  # something is always shown
