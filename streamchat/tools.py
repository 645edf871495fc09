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
        try:
            handler = self._handler(spec)
        except Exception as exc:
            return f"Error: the tool {spec.name!r} cannot be loaded ({type(exc).__name__})."
        try:
            if inspect.iscoroutinefunction(handler):
                result = await asyncio.wait_for(handler(**args), timeout=spec.timeout)
            else:
                # A thread cannot be killed: past the limit the model gets the error and
                # the turn goes on; the stray thread finishes on its own.
                result = await asyncio.wait_for(asyncio.to_thread(handler, **args), timeout=spec.timeout)
        except TimeoutError:
            return f"Error: the tool {spec.name!r} did not finish within {spec.timeout:g} s."
        except Exception as exc:
            return f"Error: the tool {spec.name!r} failed ({type(exc).__name__}: {exc})."
        if isinstance(result, str):
            return result
        try:
            return json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError):
            return str(result)
