"""Local function tools: the registry, the safe runner (every failure is an error text,
never an exception or a hang) and the demo tools."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any

import pytest

from streamchat import demo_tools
from streamchat.backends.base import ToolCall
from streamchat.config import ConfigError, ToolSpec, parse_config
from streamchat.tools import MAX_OUTPUT_CHARS, LocalTools, format_result, load_handler

GATE = threading.Event()
"""What ``blocked`` waits on: set by the test once the runner has given up on it."""
RELEASED = threading.Event()


def blocked() -> str:
    GATE.wait(2)
    RELEASED.set()
    return "too late"


async def blocked_async() -> str:
    await asyncio.Event().wait()  # never set: only the runner's time limit ends it
    return "never"


def explode(**kwargs: Any) -> str:
    raise RuntimeError("the tool broke")


def leave() -> str:
    sys.exit(3)


async def leave_async() -> str:
    sys.exit("bye")


async def async_echo(text: str) -> dict[str, str]:
    return {"echo": text}


def huge() -> str:
    return "x" * (MAX_OUTPUT_CHARS + 10)


def odd_result() -> object:
    return {1, 2}  # not JSON: sent as its str()


def fn(name: str, handler: str, parameters: dict[str, Any] | None = None, timeout: float = 10.0) -> ToolSpec:
    return ToolSpec(
        type="function",
        name=name,
        handler=handler,
        parameters=parameters or {"type": "object", "properties": {}},
        timeout=timeout,
    )


TIME_SCHEMA = {
    "type": "object",
    "properties": {"timezone": {"type": "string"}},
    "required": ["timezone"],
    "additionalProperties": False,
}


@pytest.fixture
def tools() -> LocalTools:
    return LocalTools(
        [
            fn("get_time", "streamchat.demo_tools:get_time", TIME_SCHEMA),
            fn("explode", "test_tools:explode"),
            fn("leave", "test_tools:leave"),
            fn("leave_async", "test_tools:leave_async"),
            fn("blocked", "test_tools:blocked", timeout=0.05),
            fn("blocked_async", "test_tools:blocked_async", timeout=0.05),
            fn("async_echo", "test_tools:async_echo", {"type": "object", "properties": {"text": {"type": "string"}}}),
            fn("huge", "test_tools:huge"),
            fn("odd", "test_tools:odd_result"),
            fn("missing", "test_tools:no_such_function"),
            ToolSpec(type="code_interpreter", name="code_interpreter"),
        ]
    )


async def run(tools: LocalTools, name: str, arguments: str = "{}") -> str:
    return await tools.run(ToolCall("call_1", name, arguments))


async def test_a_call_returns_the_handlers_result_as_json(tools: LocalTools) -> None:
    out = await run(tools, "get_time", '{"timezone": "Asia/Tokyo"}')
    data = json.loads(out)
    assert data["timezone"] == "Asia/Tokyo" and data["utc_offset"] == "+0900"


async def test_an_async_handler_is_awaited(tools: LocalTools) -> None:
    assert await run(tools, "async_echo", '{"text": "こんにちは"}') == '{"echo": "こんにちは"}'


async def test_empty_arguments_mean_no_arguments(tools: LocalTools) -> None:
    assert await run(tools, "explode", "") == "Error: the tool 'explode' failed (RuntimeError: the tool broke)."


AVAILABLE = "get_time, explode, leave, leave_async, blocked, blocked_async, async_echo, huge, odd, missing"


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        (
            "nope",
            "{}",
            f"Error: unknown tool 'nope' (available: {AVAILABLE}).",
        ),
        (
            "code_interpreter",
            "{}",
            f"Error: unknown tool 'code_interpreter' (available: {AVAILABLE}).",
        ),
        (
            "get_time",
            '{"timezone": "Asia/Tokyo"',
            "Error: the arguments are not valid JSON (Expecting ',' delimiter at position 25).",
        ),
        ("get_time", '["Asia/Tokyo"]', "Error: the arguments must be a JSON object."),
        ("get_time", '{"timezone": 9}', "Error: invalid arguments (timezone: 9 is not of type 'string')."),
        ("get_time", "{}", "Error: invalid arguments (arguments: 'timezone' is a required property)."),
        (
            "get_time",
            '{"timezone": "Mars/Olympus"}',
            "Error: the tool 'get_time' failed (ValueError: unknown time zone 'Mars/Olympus').",
        ),
        ("explode", "{}", "Error: the tool 'explode' failed (RuntimeError: the tool broke)."),
        ("leave", "{}", "Error: the tool 'leave' failed (SystemExit: 3)."),
        ("leave_async", "{}", "Error: the tool 'leave_async' failed (SystemExit: bye)."),
        ("missing", "{}", "Error: the tool 'missing' cannot be loaded (AttributeError)."),
        (
            "async_echo",
            '{"text": "a", "extra": 1}',
            "Error: the tool 'async_echo' failed (TypeError: async_echo() got an unexpected keyword argument 'extra').",
        ),
    ],
    ids=[
        "unknown",
        "builtin-is-not-local",
        "not-json",
        "not-object",
        "wrong-type",
        "missing-required",
        "handler-valueerror",
        "handler-raises",
        "handler-exits",
        "async-handler-exits",
        "handler-not-importable",
        "unexpected-argument",
    ],
)
async def test_every_failure_is_an_error_text(tools: LocalTools, name: str, arguments: str, expected: str) -> None:
    assert await run(tools, name, arguments) == expected


async def test_a_blocked_sync_handler_times_out_without_waiting_for_it(tools: LocalTools) -> None:
    GATE.clear()
    RELEASED.clear()
    try:
        out = await asyncio.wait_for(run(tools, "blocked"), timeout=1.5)
        assert out == "Error: the tool 'blocked' did not finish within 0.05 s."
        assert not RELEASED.is_set()  # the answer came while the handler was still stuck
    finally:
        GATE.set()
    assert await asyncio.to_thread(RELEASED.wait, 2)  # and the stray thread finishes on its own


async def test_a_blocked_async_handler_times_out(tools: LocalTools) -> None:
    out = await asyncio.wait_for(run(tools, "blocked_async"), timeout=1.5)
    assert out == "Error: the tool 'blocked_async' did not finish within 0.05 s."


async def test_a_huge_output_is_cut(tools: LocalTools) -> None:
    out = await run(tools, "huge")
    assert out.startswith("x" * MAX_OUTPUT_CHARS)
    assert out.endswith(f"… (cut: the output had {MAX_OUTPUT_CHARS + 10} characters)")


async def test_a_result_that_is_not_json_is_sent_as_text(tools: LocalTools) -> None:
    assert await run(tools, "odd") == "{1, 2}"


def test_format_result() -> None:
    assert format_result("plain") == "plain"
    assert format_result({"a": "é", "n": 1}) == '{"a": "é", "n": 1}'
    assert format_result([1, None]) == "[1, null]"


def test_only_function_tools_are_local() -> None:
    config = parse_config(
        """
name: t
instructions: i
model: m
tools:
  - type: file_search
    vector_store_ids: [vs_1]
  - name: roll_dice
    handler: streamchat.demo_tools:roll_dice
"""
    )
    assert list(LocalTools(config.tools).specs) == ["roll_dice"]


def test_check_names_a_handler_that_does_not_load() -> None:
    tools = LocalTools([fn("a", "streamchat.demo_tools:get_time"), fn("b", "no_such_module_xyz:f")])
    with pytest.raises(ConfigError, match=r"^tools\[1\]\.handler: cannot load 'no_such_module_xyz:f' \(ModuleNotFoundError"):
        tools.check()


def test_check_names_an_invalid_schema() -> None:
    tools = LocalTools([fn("a", "streamchat.demo_tools:get_time", {"type": "no-such-type"})])
    with pytest.raises(ConfigError, match=r"^tools\[0\]\.parameters: not a valid JSON schema"):
        tools.check()


async def test_an_invalid_schema_at_run_time_is_an_error_text() -> None:
    tools = LocalTools([fn("a", "streamchat.demo_tools:get_time", {"type": "no-such-type"})])
    assert await run(tools, "a") == "Error: the tool 'a' has an invalid parameter schema."


def test_the_shipped_config_loads_its_tools() -> None:
    from streamchat.config import load_config

    config = load_config("assistant_config.yaml")
    tools = LocalTools(config.tools)
    tools.check()
    assert {"get_time", "convert_units", "roll_dice"} <= set(tools.specs)


def test_load_handler_refuses_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match="not callable"):
        load_handler("streamchat.tools:MAX_OUTPUT_CHARS")


# -- demo tools ----------------------------------------------------------------------


def test_get_time_at_a_fixed_moment() -> None:
    now = "2026-11-25T03:04:00+00:00"
    assert demo_tools.get_time("Asia/Tokyo", now=now) == {
        "timezone": "Asia/Tokyo",
        "time": "12:04",
        "date": "2026-11-25",
        "utc_offset": "+0900",
    }
    assert demo_tools.get_time("Europe/Paris", now=now)["time"] == "04:04"


def test_get_time_reads_a_naive_moment_as_utc() -> None:
    assert demo_tools.get_time("Asia/Tokyo", now="2026-11-25T03:04:00") == demo_tools.get_time(
        "Asia/Tokyo", now="2026-11-25T03:04:00+00:00"
    )


def test_get_time_refuses_an_unknown_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        demo_tools.get_time("Not/AZone")


@pytest.mark.parametrize(
    ("value", "a", "b", "expected"),
    [
        (1, "mi", "km", 1.609344),
        (100, "c", "f", 212.0),
        (0, "k", "c", -273.15),
        (2, "lb", "g", 907.18474),
        (1, "gal", "l", 3.785412),
    ],
)
def test_convert_units(value: float, a: str, b: str, expected: float) -> None:
    assert demo_tools.convert_units(value, a, b) == {"value": expected, "unit": b}


def test_convert_units_refuses_mixed_dimensions() -> None:
    with pytest.raises(ValueError, match="cannot convert length to mass"):
        demo_tools.convert_units(1, "km", "kg")
    with pytest.raises(ValueError, match="unknown unit: parsec"):
        demo_tools.convert_units(1, "parsec", "km")


def test_roll_dice_is_repeatable_with_a_seed() -> None:
    first = demo_tools.roll_dice(sides=20, count=5, seed=42)
    assert first == demo_tools.roll_dice(sides=20, count=5, seed=42)
    rolls = first["rolls"]
    assert isinstance(rolls, list) and len(rolls) == 5 and all(1 <= r <= 20 for r in rolls)
    assert first["total"] == sum(rolls)
