"""The Gradio UI: a ChatInterface whose async generator yields the growing reply.

Per-tab state (``SessionSlot`` in a ``gr.State``) holds the tab's ``ChatSession``; the
``Runtime`` only indexes sessions by Gradio session hash so a closed tab can end its
own thread or conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from .session import ChatSession, Runtime

log = logging.getLogger("streamchat")

CONCURRENCY_LIMIT = 128
"""Streams served at once (Gradio's default of 1 would queue every second user)."""

CSS = """
.streamchat-banner p { margin: 0; }
"""


class SessionSlot:
    """The per-tab holder kept in ``gr.State`` (created empty, filled on first use)."""

    def __init__(self) -> None:
        self.session: ChatSession | None = None

    def get(self, runtime: Runtime) -> ChatSession:
        if self.session is None:
            self.session = runtime.new_session()
        return self.session


def banner_text(runtime: Runtime, session: ChatSession | None = None) -> str:
    settings = runtime.settings
    if runtime.live:
        parts = [f"🟢 **Live** · backend `{runtime.config.backend}` · model `{runtime.config.model}`"]
        if settings.record_dir is not None:
            parts.append(f"recording to `{settings.record_dir.name}/`")
        return " · ".join(parts)
    name = session.recording_name if session else (runtime.recordings[0] if runtime.recordings else None)
    if name is None or runtime.library is None:
        return "⚠️ **No API key and no recording**: set `OPENAI_API_KEY` to chat live."
    recording = runtime.library.load(name)
    speed = session.speed if session else settings.speed
    origin = (
        "synthetic: made up in the API's exact wire format, not captured from a live model"
        if recording.synthetic
        else "recorded from a live session"
    )
    pace = "instant" if speed == 0 else f"{speed:g}×"
    return (
        f"▶️ **Replay** of `{name}` ({origin}) · API `{recording.api}` · speed {pace} · "
        "no `OPENAI_API_KEY` is set, so answers come from recordings; ask one of the example prompts."
    )


def _examples(runtime: Runtime, name: str | None) -> list[str]:
    if runtime.live or runtime.library is None or name is None:
        return list(runtime.config.ui.examples)
    return list(dict.fromkeys(runtime.library.load(name).prompts))


def build_demo(runtime: Runtime) -> gr.Blocks:
    config = runtime.config
    first = runtime.recordings[0] if runtime.recordings else None

    def discard(slot: SessionSlot) -> None:
        if slot.session is not None:
            runtime.discard(slot.session)

    async def respond(message: str, history: list[dict[str, Any]], slot: SessionSlot) -> AsyncIterator[Any]:
        session = slot.get(runtime)
        runtime.loop = asyncio.get_running_loop()
        async for value in session.turn(message, history):
            yield value

    async def on_load(slot: SessionSlot, request: gr.Request) -> None:
        session = slot.get(runtime)
        if request is not None and request.session_hash:
            runtime.sessions[request.session_hash] = session

    async def on_unload(request: gr.Request) -> None:
        session = runtime.sessions.pop(request.session_hash or "", None)
        if session is not None:
            await session.close()

    async def on_clear(slot: SessionSlot) -> None:
        await slot.get(runtime).reset()

    def on_stop(history: list[dict[str, Any]], slot: SessionSlot) -> Any:
        session = slot.get(runtime)
        if not (session.busy or session.last_status == "cancelled"):
            return gr.skip()
        if history and history[-1].get("metadata", {}) and "Stopped" in str(history[-1]["metadata"].get("title", "")):
            return gr.skip()
        marker = {
            "role": "assistant",
            "content": "",
            "metadata": {"title": "⏹ Stopped: the answer above is incomplete.", "status": "done"},
        }
        return [*history, marker]

    with gr.Blocks(title=config.ui.title, fill_height=True) as demo:
        slot = gr.State(SessionSlot, delete_callback=discard)
        banner = gr.Markdown(banner_text(runtime), elem_classes="streamchat-banner", elem_id="mode-banner")
        picker = speed = None
        if not runtime.live and len(runtime.recordings) > 0:
            with gr.Row(equal_height=True):
                picker = gr.Dropdown(
                    choices=runtime.recordings, value=first, label="Recording", elem_id="recording-picker", scale=3
                )
                speed = gr.Slider(
                    0,
                    4,
                    value=runtime.settings.speed,
                    step=0.25,
                    label="Replay speed (0 = instant)",
                    elem_id="replay-speed",
                    scale=2,
                )
        examples = _examples(runtime, first)
        chat = gr.ChatInterface(
            respond,
            additional_inputs=[slot],
            api_name="chat",
            title=config.ui.title,
            description=config.ui.description or None,
            examples=[[p, None] for p in examples] or None,
            concurrency_limit=CONCURRENCY_LIMIT,
            fill_height=True,
        )
        demo.load(on_load, [slot], None, api_visibility="private")
        demo.unload(on_unload)
        chat.chatbot.clear(on_clear, [slot], None, api_visibility="private")
        chat.textbox.stop(on_stop, [chat.chatbot, slot], [chat.chatbot], api_visibility="private")

        if picker is not None and speed is not None:

            async def on_pick(name: str, value: float, slot: SessionSlot) -> tuple[Any, Any, Any]:
                if name not in runtime.recordings:  # only names this server listed
                    raise gr.Error("Unknown recording.")
                session = slot.get(runtime)
                await session.reset(recording=name, speed=value)
                prompts: list[Any] = [{"text": p} for p in _examples(runtime, name)]
                return gr.Chatbot(value=[], examples=prompts), [], banner_text(runtime, session)

            async def on_speed(value: float, slot: SessionSlot) -> str:
                session = slot.get(runtime)
                session.set_speed(value)
                return banner_text(runtime, session)

            picker.change(on_pick, [picker, speed, slot], [chat.chatbot, chat.chatbot_state, banner], api_visibility="private")
            speed.change(on_speed, [speed, slot], [banner], api_visibility="private")
    return demo
