"""One backend a file; each turns its provider's raw events into `StreamEvent`s."""

from __future__ import annotations

from .assistants import AssistantsBackend
from .base import Backend, Conversation, ToolCall, TurnContext
from .chat import ChatBackend
from .responses import ResponsesBackend

BACKENDS: dict[str, type[Backend]] = {
    "responses": ResponsesBackend,
    "assistants": AssistantsBackend,
    "chat": ChatBackend,
}

__all__ = ["BACKENDS", "Backend", "Conversation", "ToolCall", "TurnContext"]
