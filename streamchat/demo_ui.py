"""Demo mode in the browser: Play, Pause/Resume, Stop and chapters beside the recording
picker, and autoplay from the page's address (``?autoplay=1&recording=NAME&speed=X
&loop=1``) or ``--autoplay``.

One Gradio event per demo streams the chat's values from ``demo_mode.play`` (server
side, so nothing in the browser drives the message box); the buttons only set the
tab's ``Controls``. ui.py calls ``add_controls`` where the buttons go and ``wire`` once
the chat exists.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .demo_mode import Controls, Frame, Timing, play
from .recording import Recording
from .session import ChatSession, Runtime

PAUSE, RESUME = "⏸ Pause", "▶ Resume"
MESSAGE_BOX = "message-box"
"""The chat's message box (its ``elem_id``, set in ui.py)."""
TAKE_OVER_JS = (
    """
() => {
  // The visitor types in the message box or adds a file while a demo plays (or is
  // paused): the demo hands the chat over, as its Stop button does. Only the browser
  // knows a person's keystroke from the demo's own typing (a trusted input event), and
  // the multimodal box sends the server no input event, only a change per update.
  if (window.__streamchatTakeOver) return;
  window.__streamchatTakeOver = true;
  const takeOver = (event) => {
    if (!event.isTrusted || !(event.target instanceof Element) || !event.target.closest('#BOX')) return;
    const status = (document.querySelector('#demo-status')?.textContent || '').trim();
    if (/^(▶️|⏸)/.test(status)) document.querySelector('#demo-stop')?.click();
  };
  document.addEventListener('input', takeOver, true);
  document.addEventListener('change', takeOver, true);
}
"""
).replace("BOX", MESSAGE_BOX)
MAX_URL_SPEED = 16.0


class DemoSlot:
    """A tab's demo: its controls, and a picker value it set itself (so the picker's own
    change event does not reset the chat it is playing)."""

    def __init__(self) -> None:
        self.controls = Controls()
        self.echo: str | None = None

    def own_pick(self, name: str) -> bool:
        """True once for a picker change this demo made (autoplay of another recording)."""
        if self.echo is not None and self.echo == name:
            self.echo = None
            return True
        return False


@dataclass
class DemoControls:
    play: gr.Button
    pause: gr.Button
    stop: gr.Button
    chapters: gr.Dropdown
    status: gr.Markdown


def chapter_choices(recording: Recording) -> list[tuple[str, str]]:
    return [(f"Turn {m.turn + 1} · {m.label}", str(m.turn)) for m in recording.markers]


def add_controls(runtime: Runtime, name: str | None) -> DemoControls:
    """The demo's buttons, a chapter list (shown when the recording has markers) and a
    status line, in a row of their own."""
    choices = chapter_choices(runtime.library.load(name)) if runtime.library is not None and name else []
    with gr.Row(elem_id="demo-controls"):
        play_button = gr.Button("▶ Play", variant="primary", elem_id="demo-play", scale=0, min_width=100)
        pause = gr.Button(PAUSE, elem_id="demo-pause", scale=0, min_width=110)
        stop = gr.Button("⏹ Stop demo", elem_id="demo-stop", scale=0, min_width=120)
        chapters = gr.Dropdown(
            choices=choices, value=None, label="Chapters", visible=bool(choices), elem_id="demo-chapters", scale=2
        )
        status = gr.Markdown("", elem_id="demo-status")
    return DemoControls(play_button, pause, stop, chapters, status)


def status_line(frame: Frame, total: int) -> str:
    turn = f"turn {frame.turn + 1} of {total}"
    return {
        "waiting": f"▶️ Demo: {turn}" if frame.turn >= 0 else "▶️ Demo starting",
        "typing": f"▶️ Demo: typing {turn}",
        "sending": f"▶️ Demo: {turn}",
        "answering": f"▶️ Demo: answering {turn}",
        "done": f"✅ Demo done: {total} turn{'' if total == 1 else 's'}",
        "stopped": f"⏹ Demo stopped at {turn}",
    }[frame.state]


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


def _speed(value: str | None) -> float | None:
    try:
        speed = float(value) if value else None
    except ValueError:
        return None
    return speed if speed is not None and math.isfinite(speed) and 0 <= speed <= MAX_URL_SPEED else None


def wire(
    runtime: Runtime,
    demo: gr.Blocks,
    chat: gr.ChatInterface,
    controls: DemoControls,
    picker: gr.Dropdown,
    speed: gr.Slider,
    banner: gr.Markdown,
    slot: gr.State,
    banner_of: Callable[[ChatSession], str],
) -> None:
    """Connect the buttons, the chapter list, typing in the message box (take over) and
    page load (autoplay)."""
    settings = runtime.settings
    outputs = [chat.chatbot, chat.chatbot_state, chat.textbox, controls.status, controls.pause, picker, speed, banner]
    skip = gr.skip
    nothing = tuple(skip() for _ in outputs)

    async def run(
        ui: Any, name: str, value: float, start: int = 0, loop: bool = False, first: tuple[Any, ...] = ()
    ) -> AsyncIterator[tuple[Any, ...]]:
        if name not in runtime.recordings or runtime.library is None:  # only names this server listed
            raise gr.Error("Unknown recording.")
        demo_slot: DemoSlot = ui.demo
        await demo_slot.controls.end_running()
        if not ui.idle.is_set():  # a typed message's answer is streaming: stop it first
            ui.stop.set()
            await ui.idle.wait()
        session: ChatSession = ui.get(runtime)
        await session.reset(recording=name, speed=value)
        session.set_clock(demo_slot.controls.clock)
        ui.recorded_turns.clear()
        ui.local.clear()
        recording = runtime.library.load(name)
        timing = Timing(typing=settings.typing, max_gap=settings.max_gap, loop=loop)
        total = len(recording.turns)
        shown: str | None = None
        extra = first or (skip(), skip(), banner_of(session))
        async for frame in play(recording, session, demo_slot.controls, timing=timing, start=start):
            draft = skip() if frame.draft == shown or frame.state == "stopped" else frame.draft
            shown = frame.draft
            ending = frame.state in ("done", "stopped")
            yield (
                frame.history,
                frame.history,
                draft,
                status_line(frame, total),
                PAUSE if ending or not extra else skip(),
                *extra,
            )
            extra = (skip(), skip(), skip())

    async def on_play(name: str, value: float, ui: Any) -> AsyncIterator[tuple[Any, ...]]:
        async for values in run(ui, name, value):
            yield values

    async def on_chapter(turn: str | None, name: str, value: float, ui: Any) -> AsyncIterator[tuple[Any, ...]]:
        if turn is None or not str(turn).isdigit():
            yield nothing  # a generator that yields nothing would blank every output
            return
        async for values in run(ui, name, value, start=int(turn)):
            yield values

    async def on_autoplay(name: str, value: float, ui: Any, request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        params = request.query_params if request is not None else {}
        wanted = params.get("autoplay")
        if not (_flag(wanted) if wanted is not None else settings.autoplay):
            yield nothing
            return
        asked = params.get("recording")
        if asked is not None and asked not in runtime.recordings:
            raise gr.Error(f"No recording named {asked[:80]!r}.")
        pick = asked or name
        pace = _speed(params.get("speed"))
        pace = value if pace is None else pace
        if pick != name:
            ui.demo.echo = pick  # its change event is ours: not a new pick to reset for
        first = (pick if pick != name else skip(), pace if pace != value else skip(), skip())
        async for values in run(ui, pick, pace, loop=_flag(params.get("loop")), first=first):
            yield values

    async def on_pause(ui: Any) -> tuple[Any, Any]:
        demo_controls: Controls = ui.demo.controls
        if not demo_controls.playing:
            return PAUSE, skip()
        if demo_controls.paused:
            demo_controls.resume()
            return PAUSE, "▶️ Demo resumed"
        demo_controls.pause()
        return RESUME, "⏸ Demo paused"

    async def on_stop(ui: Any) -> None:
        ui.demo.controls.stop()

    private: dict[str, Any] = {"api_visibility": "private"}
    playing: dict[str, Any] = {**private, "show_progress": "hidden"}
    controls.play.click(on_play, [picker, speed, slot], outputs, **playing)
    controls.chapters.input(on_chapter, [controls.chapters, picker, speed, slot], outputs, **playing)
    demo.load(on_autoplay, [picker, speed, slot], outputs, **playing)
    controls.pause.click(on_pause, [slot], [controls.pause, controls.status], queue=False, **private)
    controls.stop.click(on_stop, [slot], None, queue=False, **private)
    demo.load(None, None, None, js=TAKE_OVER_JS, **private)

    def on_recording(name: str) -> Any:
        choices = (
            chapter_choices(runtime.library.load(name)) if runtime.library is not None and name in runtime.recordings else []
        )
        return gr.Dropdown(choices=choices, value=None, visible=bool(choices))

    picker.change(on_recording, [picker], [controls.chapters], **private)
