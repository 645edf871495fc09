"""Request bodies checked before they reach the replay API's handler: their size, their
nesting and the types of the fields it reads.

A bad body gets a 4xx JSON error in OpenAI's shape whose ``param`` names the field
(``input[0].content[1].text``), never a bare 500. Fields the handler never reads are
not checked: a real client may send anything there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_BODY = 32 * 1024 * 1024
"""Bytes a request body may have (``--max-body`` changes it for the replay server): room
for a message carrying a 20 MiB image as a data URL (base64 adds a third) or an upload."""
MAX_DEPTH = 64
"""Nesting levels of arrays and objects a body may have."""


@dataclass
class Invalid(Exception):
    """A request refused before it is handled."""

    status: int
    message: str
    param: str | None = None
    code: str = "invalid_value"

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": "invalid_request_error", "param": self.param, "code": self.code}}


def too_large(limit: int) -> Invalid:
    return Invalid(413, f"The request body is larger than {limit} bytes.", None, "request_too_large")


def parse_body(raw: bytes) -> Any:
    """The JSON of a body (None when empty), or ``Invalid`` for what is not JSON or is
    nested deeper than ``MAX_DEPTH``."""
    if not raw.strip():
        return None
    if _depth_over(raw, MAX_DEPTH):
        raise Invalid(400, f"The request body is nested deeper than {MAX_DEPTH} levels.", None, "too_deep")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise Invalid(400, "The request body is not valid JSON.", None, "invalid_json") from None


def _depth_over(raw: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` (checked before
    parsing, so a 100k-deep body never reaches the recursive parser)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


# -- the fields the handler reads ----------------------------------------------------------

Check = Callable[[Any, str], None]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _fail(param: str, expected: str, value: Any) -> Invalid:
    return Invalid(400, f"Invalid type for '{param}': expected {expected}, but got {_kind(value)}.", param, "invalid_type")


def string(value: Any, param: str) -> None:
    if not isinstance(value, str):
        raise _fail(param, "a string", value)


def optional(check: Check) -> Check:
    def run(value: Any, param: str) -> None:
        if value is not None:
            check(value, param)

    return run


def boolean(value: Any, param: str) -> None:
    if not isinstance(value, bool):
        raise _fail(param, "a boolean", value)


def number(value: Any, param: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(param, "a number", value)


def array(item: Check | None = None) -> Check:
    def run(value: Any, param: str) -> None:
        if not isinstance(value, list):
            raise _fail(param, "an array", value)
        if item is not None:
            for i, element in enumerate(value):
                item(element, f"{param}[{i}]")

    return run


def obj(fields: dict[str, Check]) -> Check:
    def run(value: Any, param: str) -> None:
        if not isinstance(value, dict):
            raise _fail(param, "an object", value)
        for name, check in fields.items():
            if name in value:
                check(value[name], f"{param}.{name}" if param else name)

    return run


def either(*checks: Check, expected: str) -> Check:
    def run(value: Any, param: str) -> None:
        for check in checks:
            try:
                check(value, param)
                return
            except Invalid as exc:
                if exc.param != param:  # the shape fitted, a field inside did not
                    raise
        raise _fail(param, expected, value)

    return run


def _text_value(value: Any, param: str) -> None:
    """A content part's ``text``: a string, or (Assistants) ``{"value": "…"}``."""
    either(string, obj({"value": string}), expected="a string")(value, param)


PART = obj({"type": optional(string), "text": optional(_text_value)})
CONTENT = optional(either(string, array(PART), expected="a string or an array of content parts"))
MESSAGE = obj({"role": optional(string), "content": CONTENT, "type": optional(string)})

RESPONSES = obj(
    {
        "input": either(string, array(MESSAGE), expected="a string or an array of input items"),
        "conversation": optional(either(string, obj({"id": string}), expected="a string or an object with an id")),
        "previous_response_id": optional(string),
        "stream": optional(boolean),
        "model": optional(string),
        "instructions": optional(string),
        "tools": optional(array()),
    }
)
CHAT = obj(
    {
        "messages": array(obj({"role": optional(string), "content": CONTENT, "tool_calls": optional(array())})),
        "stream": optional(boolean),
        "model": optional(string),
        "tools": optional(array()),
    }
)
ASSISTANT = obj(
    {
        "name": optional(string),
        "model": optional(string),
        "instructions": optional(string),
        "tools": optional(array()),
        "temperature": optional(number),
    }
)
THREAD_MESSAGE = obj({"role": optional(string), "content": CONTENT})
RUN = obj(
    {
        "assistant_id": optional(string),
        "stream": optional(boolean),
        "instructions": optional(string),
        "tools": optional(array()),
    }
)
TOOL_OUTPUTS = obj(
    {
        "tool_outputs": optional(array(obj({"tool_call_id": optional(string), "output": optional(string)}))),
        "stream": optional(boolean),
    }
)
ANY_OBJECT = obj({})


def _schema(method: str, parts: list[str]) -> Check | None:
    if method != "POST":
        return None
    n = len(parts)
    if parts == ["responses"]:
        return RESPONSES
    if parts == ["chat", "completions"]:
        return CHAT
    if parts == ["assistants"]:
        return ASSISTANT
    if n == 3 and parts[0] == "threads" and parts[2] == "messages":
        return THREAD_MESSAGE
    if n == 3 and parts[0] == "threads" and parts[2] == "runs":
        return RUN
    if n == 5 and parts[0] == "threads" and parts[4] == "submit_tool_outputs":
        return TOOL_OUTPUTS
    return ANY_OBJECT


def check_request(method: str, path: str, body: Any) -> None:
    """Raise ``Invalid`` naming the first field of ``body`` the handler could not use."""
    parts = path.strip("/").split("/")
    if parts and parts[0] == "v1":
        parts = parts[1:]
    schema = _schema(method, parts)
    if schema is None or body is None:
        return
    if not isinstance(body, dict):
        raise Invalid(400, f"The request body must be a JSON object, not {_kind(body)}.", None, "invalid_type")
    schema(body, "")
