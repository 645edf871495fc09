"""Local function tools: the registry built from the config, and one safe way to run a call.

Whatever goes wrong (an unknown name, arguments that are not JSON or fail the schema,
a handler that raises or runs past its time limit) becomes an error *text* sent back
to the model and shown in the bubble: a tool call never hangs or crashes a turn.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

import jsonschema

from .backends.base import ToolCall
from .config import ConfigError, ToolSpec

MAX_OUTPUT_CHARS = 50_000
"""A tool output longer than this is cut (the model's context and the recording are
not the place for megabytes)."""


def load_handler(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    handler = getattr(module, attr)
    if not callable(handler):
        raise TypeError(f"{spec} is not callable")
    return handler


class LocalTools:
    """The function tools of a config, ready to run."""

    def __init__(self, specs: Sequence[ToolSpec]) -> None:
        self.specs = {s.name: s for s in specs if s.type == "function"}
        self._handlers: dict[str, Callable[..., Any]] = {}

    def check(self) -> None:
        """Import every handler and check every schema now, at start-up."""
        for i, spec in enumerate(self.specs.values()):
            try:
                self._handler(spec)
            except Exception as exc:
                raise ConfigError(f"tools[{i}].handler: cannot load {spec.handler!r} ({type(exc).__name__}: {exc})") from None
            try:
                jsonschema.validators.validator_for(spec.parameters).check_schema(spec.parameters)
            except jsonschema.SchemaError as exc:
                raise ConfigError(f"tools[{i}].parameters: not a valid JSON schema ({exc.message})") from None

    def _handler(self, spec: ToolSpec) -> Callable[..., Any]:
        if spec.name not in self._handlers:
            self._handlers[spec.name] = load_handler(spec.handler)
        return self._handlers[spec.name]

    async def run(self, call: ToolCall) -> str:
        spec = self.specs.get(call.name)
        if spec is None:
            known = ", ".join(self.specs) or "none"
            return f"Error: unknown tool {call.name!r} (available: {known})."
        try:
            args = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            return f"Error: the arguments are not valid JSON ({exc.msg} at position {exc.pos})."
        if not isinstance(args, dict):
            return "Error: the arguments must be a JSON object."
        try:
            jsonschema.validate(args, spec.parameters)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
            return f"Error: invalid arguments ({where}: {exc.message})."
        except jsonschema.SchemaError:
            return f"Error: the tool {spec.name!r} has an invalid parameter schema."
        try:
            handler = self._handler(spec)
        except Exception as exc:
            return f"Error: the tool {spec.name!r} cannot be loaded ({type(exc).__name__})."
        try:
            if inspect.iscoroutinefunction(handler):
                result = await asyncio.wait_for(_guarded_async(handler, args), timeout=spec.timeout)
            else:
                # A thread cannot be killed: past the limit the model gets the error and
                # the turn goes on; the stray thread finishes on its own.
                result = await asyncio.wait_for(asyncio.to_thread(_guarded, handler, args), timeout=spec.timeout)
        except TimeoutError:
            return f"Error: the tool {spec.name!r} did not finish within {spec.timeout:g} s."
        except _Exited as exc:
            return f"Error: the tool {spec.name!r} failed (SystemExit: {exc})."
        except Exception as exc:
            return f"Error: the tool {spec.name!r} failed ({type(exc).__name__}: {exc})."
        return format_result(result)


class _Exited(Exception):
    """A handler called ``sys.exit()``. As a ``SystemExit`` it would leave the task
    that runs it and stop the whole event loop; as this it is one more tool error."""


def _guarded(handler: Callable[..., Any], args: dict[str, Any]) -> Any:
    try:
        return handler(**args)
    except SystemExit as exc:
        raise _Exited(exc.code) from None


async def _guarded_async(handler: Callable[..., Any], args: dict[str, Any]) -> Any:
    try:
        return await handler(**args)
    except SystemExit as exc:
        raise _Exited(exc.code) from None


def format_result(result: Any) -> str:
    """A handler's return value as the text sent to the model: a string as it is,
    anything else as JSON (or ``str``), cut at ``MAX_OUTPUT_CHARS``."""
    if isinstance(result, str):
        text = result
    else:
        try:
            text = json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError):
            text = str(result)
    if len(text) > MAX_OUTPUT_CHARS:
        text = f"{text[:MAX_OUTPUT_CHARS]}… (cut: the output had {len(text)} characters)"
    return text
