"""`assistant_config.yaml` → validated, immutable settings.

Validation is strict on purpose: an unknown key is almost always a typo that would
otherwise be ignored silently, so every problem stops start-up with one message that
names the key (``tools[1].parameters: expected a mapping, got list``).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from .attachments import DOCUMENT_TYPES, IMAGE_TYPES, Limits
from .sse import APIS, Api

BUILTIN_TOOL_TYPES = ("code_interpreter", "file_search", "web_search")

_Types = type | tuple[type, ...]
BUILTIN_TOOL_OPTIONS: dict[str, dict[str, dict[str, _Types]]] = {
    # built-in tool → backend that runs it → the options it takes there, and their types.
    # A backend missing here has no such tool: the app refuses to start rather than
    # drop it silently (the Chat Completions API has no built-in tools at all).
    "code_interpreter": {
        "responses": {"container": (str, dict)},
        "assistants": {"file_ids": list},  # sent as the assistant's tool_resources
    },
    "file_search": {
        "responses": {"vector_store_ids": list, "max_num_results": int, "ranking_options": dict, "filters": dict},
        "assistants": {"vector_store_ids": list, "max_num_results": int, "ranking_options": dict},
    },
    "web_search": {
        "responses": {"search_context_size": str, "user_location": dict, "filters": dict},
    },
}
REQUIRED_TOOL_OPTIONS: dict[tuple[str, str], tuple[str, ...]] = {}
"""Options a built-in tool cannot go without on a backend. None now: file_search on
Responses without ``vector_store_ids`` searches the session's own store (the documents
the user attached), and is sent only once there is one."""


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


@dataclass(frozen=True)
class ToolSpec:
    """One tool the assistant may call."""

    type: str
    """`function` for a local Python function, or a built-in tool type the provider runs."""
    name: str = ""
    """The function's name as the model sees it (functions only)."""
    description: str = ""
    """What the function does, for the model."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """JSON schema of the arguments."""
    handler: str = ""
    """`module:function` that runs the call locally (functions only)."""
    timeout: float = 10.0
    """Seconds a handler may run before its call is answered with an error."""
    options: dict[str, Any] = field(default_factory=dict)
    """Extra provider options of a built-in tool (e.g. `vector_store_ids`)."""


@dataclass(frozen=True)
class UISettings:
    title: str = "Streaming assistant"
    description: str = ""
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The assistant: persona, model, backend, tools and UI text."""

    name: str
    instructions: str
    model: str
    backend: Api = "responses"
    temperature: float | None = None
    assistant_id: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    ui: UISettings = UISettings()
    replay: Path | None = None
    """The recording (file or folder) to replay when there is no key and no ``--replay``."""
    attachments: Limits = field(default_factory=Limits)
    """What files a message may carry (``attachments:``; docs/attachments.md)."""
    source_text: str = ""
    """The YAML as read, kept for the digest a recording's header carries."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source_text.encode("utf-8")).hexdigest()

    def with_overrides(self, *, backend: str | None = None, model: str | None = None) -> Config:
        from dataclasses import replace

        out = self
        if backend:
            if backend not in APIS:
                raise ConfigError(f"backend: expected one of {', '.join(APIS)}, got {backend!r}")
            check_builtin_tools(out.tools, cast(Api, backend))
            out = replace(out, backend=cast(Api, backend))
        if model:
            out = replace(out, model=model)
        return out


_TOP_KEYS = {
    "name": str,
    "instructions": str,
    "model": str,
    "backend": str,
    "temperature": (int, float),
    "assistant_id": str,
    "tools": list,
    "ui": dict,
    "replay": str,
    "attachments": dict,
}
_REQUIRED = ("name", "instructions", "model")
_ATTACHMENT_KEYS = {"max_file_mb": (int, float), "max_files": int, "types": list, "inline_text_kb": (int, float)}
_UI_KEYS = {"title": str, "description": str, "examples": list}
_FUNCTION_KEYS = {
    "type": str,
    "name": str,
    "description": str,
    "parameters": dict,
    "handler": str,
    "timeout": (int, float),
}


def _type_name(t: _Types) -> str:
    names = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "a mapping"}
    if isinstance(t, tuple):
        return names[t[0]]
    return names[t]


def _check(mapping: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    for key, value in mapping.items():
        path = f"{where}{key}"
        if key not in schema:
            raise ConfigError(f"{path}: unknown key (allowed: {', '.join(schema)})")
        expected = schema[key]
        if value is None and key in ("temperature", "assistant_id"):
            continue
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ConfigError(f"{path}: expected {_type_name(expected)}, got {type(value).__name__}")


def _tool(raw: Any, i: int) -> ToolSpec:
    where = f"tools[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    kind = raw.get("type", "function")
    if kind in BUILTIN_TOOL_TYPES:
        options = {k: v for k, v in raw.items() if k != "type"}
        known: dict[str, _Types] = {"type": str}
        for by_backend in BUILTIN_TOOL_OPTIONS[kind].values():
            known.update(by_backend)
        _check(raw, known, f"{where}.")
        return ToolSpec(type=kind, name=kind, options=options)
    if kind != "function":
        allowed = ", ".join(("function", *BUILTIN_TOOL_TYPES))
        raise ConfigError(f"{where}.type: expected one of {allowed}, got {kind!r}")
    _check(raw, _FUNCTION_KEYS, f"{where}.")
    for key in ("name", "handler"):
        if not raw.get(key):
            raise ConfigError(f"{where}.{key}: required for a function tool")
    if ":" not in raw["handler"]:
        raise ConfigError(f"{where}.handler: expected 'module:function', got {raw['handler']!r}")
    timeout = float(raw.get("timeout", 10.0))
    if not 0 < timeout < math.inf:  # NaN fails too; an endless timeout would let a call hang
        raise ConfigError(f"{where}.timeout: must be a positive, finite number of seconds, got {timeout:g}")
    return ToolSpec(
        type="function",
        name=raw["name"],
        description=raw.get("description", ""),
        parameters=raw.get("parameters", {"type": "object", "properties": {}}),
        handler=raw["handler"],
        timeout=timeout,
    )


def _limits(raw: Any) -> Limits:
    """The ``attachments:`` section: size and count limits, accepted types."""
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        raise ConfigError(f"attachments: expected a mapping, got {type(raw).__name__}")
    _check(raw, _ATTACHMENT_KEYS, "attachments.")
    for key in ("max_file_mb", "inline_text_kb"):
        if key in raw and not 0 <= raw[key] < math.inf:
            raise ConfigError(f"attachments.{key}: expected a number of at least 0, got {raw[key]}")
    if raw.get("max_files", 0) < 0:
        raise ConfigError(f"attachments.max_files: expected a number of at least 0, got {raw['max_files']}")
    known = (*IMAGE_TYPES, *DOCUMENT_TYPES)
    types = raw.get("types", list(Limits.types))
    for i, kind in enumerate(types):
        kind = "jpeg" if kind == "jpg" else kind
        if kind not in known:
            raise ConfigError(f"attachments.types[{i}]: expected one of {', '.join(known)}, got {kind!r}")
    fields: dict[str, Any] = {k: v for k, v in raw.items() if k != "types"}
    return Limits(**fields, types=tuple("jpeg" if t == "jpg" else t for t in types))


def parse_config(text: str, *, origin: str = "config", base: Path | None = None) -> Config:
    """Validate a config's text; ``base`` is the folder relative paths (``replay``) start from."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{origin}: not valid YAML{at}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of settings at the top level")
    _check(raw, _TOP_KEYS, "")
    for key in _REQUIRED:
        if not raw.get(key):
            raise ConfigError(f"{key}: required")
    backend = raw.get("backend", "responses")
    if backend not in APIS:
        raise ConfigError(f"backend: expected one of {', '.join(APIS)}, got {backend!r}")
    temperature = raw.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise ConfigError(f"temperature: expected a number from 0 to 2, got {temperature}")
    ui_raw = raw.get("ui") or {}
    _check(ui_raw, _UI_KEYS, "ui.")
    examples = ui_raw.get("examples", [])
    for i, example in enumerate(examples):
        if not isinstance(example, str):
            raise ConfigError(f"ui.examples[{i}]: expected a string, got {type(example).__name__}")
    tools = tuple(_tool(t, i) for i, t in enumerate(raw.get("tools") or []))
    names = [t.name for t in tools]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"tools: the name {name!r} is used twice")
    check_builtin_tools(tools, backend)
    replay = raw.get("replay")
    if replay is not None and not replay:
        raise ConfigError("replay: expected the path of a recording file or folder, got an empty string")
    return Config(
        name=raw["name"],
        instructions=raw["instructions"],
        model=raw["model"],
        backend=backend,
        temperature=float(temperature) if temperature is not None else None,
        assistant_id=raw.get("assistant_id") or None,
        tools=tools,
        ui=UISettings(
            title=str(ui_raw.get("title") or raw["name"]),
            description=ui_raw.get("description", ""),
            examples=tuple(examples),
        ),
        replay=Path(os.path.normpath((base or Path()) / replay)) if replay else None,
        attachments=_limits(raw.get("attachments")),
        source_text=text,
    )


def check_builtin_tools(tools: tuple[ToolSpec, ...], backend: Api) -> None:
    """Refuse, in one line naming the tool and the backend, a built-in tool (or one of
    its options) the backend's API does not have, rather than drop it silently."""
    for i, tool in enumerate(tools):
        if tool.type not in BUILTIN_TOOL_OPTIONS:
            continue
        allowed = BUILTIN_TOOL_OPTIONS[tool.type].get(backend)
        if allowed is None:
            where = [b for b in APIS if b in BUILTIN_TOOL_OPTIONS[tool.type]]
            raise ConfigError(
                f"tools[{i}]: the {backend} backend has no built-in {tool.type} tool (use backend: {' or '.join(where)},"
                " or remove the tool)"
            )
        for key in tool.options:
            if key not in allowed:
                raise ConfigError(f"tools[{i}].{key}: not an option of {tool.type} on the {backend} backend")
        for key in REQUIRED_TOOL_OPTIONS.get((tool.type, backend), ()):
            if not tool.options.get(key):
                raise ConfigError(f"tools[{i}].{key}: required for {tool.type} on the {backend} backend")


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: cannot read {path}: {exc}") from None
    return parse_config(text, origin=str(path), base=path.parent)
