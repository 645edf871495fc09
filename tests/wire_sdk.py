"""The `openai` SDK's own types as the judge of a stream's events (tests only).

Each raw event is validated against the pydantic model its ``type`` (Responses) or
event name (Assistants) selects from the SDK's union, or against
``ChatCompletionChunk``. A field the SDK requires but a published capture of the live
API lacks as well is an exception, listed in ``EXCEPTIONS`` with that capture.
"""

from __future__ import annotations

import typing
from typing import Any

import pydantic
from openai.types.beta import AssistantStreamEvent
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from openai.types.shared import ErrorObject

from streamchat.backends.assistants import event_name
from streamchat.sse import RawEvent


def _members(union: Any, field: str) -> dict[str, type[pydantic.BaseModel]]:
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    out = {}
    for model in typing.get_args(union):
        for value in typing.get_args(model.model_fields[field].annotation):
            out[value] = model
    return out


RESPONSES = _members(ResponseStreamEvent, "type")
ASSISTANTS = _members(AssistantStreamEvent, "event")

EXCEPTIONS: dict[tuple[str, str], str] = {
    # (api, error location ending): the capture that lacks the field too.
    ("responses", "usage.input_tokens_details.cache_write_tokens"): (
        "openai/openai-dotnet tests/SessionRecords/ResponsesTests/StreamingResponses.json: its response.completed "
        'usage has "input_tokens_details":{"cached_tokens":0} only'
    ),
}


def sdk_errors(api: str, raw: RawEvent) -> list[str]:
    """What the SDK's type for this event finds wrong with it (exceptions left out)."""
    data = raw.data
    if raw.is_done or (api == "assistants" and raw.event == "done"):
        return []
    if not isinstance(data, dict):
        return [f"not a JSON object: {data!r:.60}"]
    try:
        if api == "responses":
            model = RESPONSES.get(str(data.get("type")))
            if model is None:
                return [f"no SDK type for event {data.get('type')!r}"]
            model.model_validate(data)
        elif api == "chat":
            if "error" in data:  # an error chunk: the SDK raises APIError with its body
                ErrorObject.model_validate({"type": "error", **data["error"]})
            else:
                ChatCompletionChunk.model_validate(data)
        else:
            name = event_name(raw)
            model = ASSISTANTS.get(name)
            if model is None:
                return [f"no SDK type for event {name!r}"]
            model.model_validate({"event": name, "data": data})
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            if any(api == a and where.endswith(tail) for a, tail in EXCEPTIONS):
                continue
            problems.append(f"{where}: {error['msg']}")
        return problems
    return []
