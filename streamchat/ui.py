"""The Gradio UI: a ChatInterface whose async generator yields the growing reply.

Per-tab state (``SessionSlot`` in a ``gr.State``) holds the tab's ``ChatSession``; the
``Runtime`` only indexes sessions by Gradio session hash so a closed tab can end its
own thread or conversation.

Live, a session can pause its own recording and download it; the download is a copy of
that session's own file, made by the server, so no path from the browser ever reaches
the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import processing_utils
from gradio.context import LocalContext
from gradio.events import EventListener

from . import attachments as att
from .demo_ui import MESSAGE_BOX, DemoSlot, add_controls, wire
from .guard import AllowList, Guard, Refusal
from .options import DEFAULT_RECORDINGS, server_label
from .playback import example_messages
from .recording import RecordingWriter
from .replay import normalize
from .session import ChatSession, Runtime
from .spaces import (
    FEEDBACK_FILE,
    FeedbackLog,
    on_space,
    sign_in_offered,
    signed_in,
    space_banner,
    start_dataset_sync,
    visitor_of,
    warn_if_unprotected,
    with_past_vote,
)

log = logging.getLogger("streamchat")

CONCURRENCY_LIMIT = 1000
"""Streams served at once (Gradio's default of 1 would queue every second user). Far
above what one core streams smoothly (about 200 sessions, docs/performance.md): a
crowd over the limit waits in waves of whole turns, worse than sharing the core (500
visitors arriving at once: p95 5.1× their recorded time at 128, 2.4× at 500, issue
16). Memory is not the limit: about 0.2 MiB per streaming session."""

RECORD_OFF = "Off: start the app with --record, or set STREAMCHAT_RECORD."
RECORD_OFF_SPACE = "Off on this Space: its owner can allow it with the STREAMCHAT_RECORD variable."
DOWNLOAD_WAIT = 30.0
"""Seconds the download button waits for a running turn before offering the file as is."""

CSS = """
/* Phones: the recording picker and the speed slider take a row each, so a long
   recording name is not cut under the dropdown's arrow. */
@media (max-width: 640px) {
  #recording-picker, #replay-speed { flex: 1 1 100% !important; min-width: 100% !important; }
}
#recording-picker input { text-overflow: ellipsis; }
"""
"""Passed to ``launch`` (Gradio 6 takes CSS there, not in ``Blocks``)."""


class SessionSlot:
    """The per-tab holder kept in ``gr.State`` (created empty, filled on first use)."""

    def __init__(self) -> None:
        self.session: ChatSession | None = None
        self.recorded: Path | None = None
        """The file this tab's session recorded to last (what the download offers)."""
        self.offered: tuple[Path, int] | None = None
        self.downloads: Path | None = None
        """A private temporary folder for the copies this tab downloads."""
        self.cached: set[Path] = set()
        """Gradio's own copies of them (a folder each in its cache, named by content hash)."""
        self.idle = asyncio.Event()
        """Set while no turn of this tab runs."""
        self.idle.set()
        self.stop = asyncio.Event()
        """Set by the Stop button: the running turn ends, marked as stopped."""
        self.recorded_turns: dict[int, tuple[RecordingWriter, int]] = {}
        """The chat's turns (by place) that a recording holds: where their votes go."""
        self.local: set[int] = set()
        """The chat's turns answered without the provider (refused): no vote on those."""
        self.feedback_id = secrets.token_hex(8)
        self.asked = 0
        """Replay: the chat's messages its recording answered (the banner offers the next)."""
        self.demo = DemoSlot()
        """Demo mode's controls for this tab (demo_ui.py)."""

    def get(self, runtime: Runtime) -> ChatSession:
        if self.session is None:
            self.session = runtime.new_session()
        return self.session

    def cleanup(self) -> None:
        """Remove every copy this tab was offered, Gradio's included: nothing readable
        outlives the session (called when its tab closes, and when its state expires)."""
        if self.downloads is not None:
            shutil.rmtree(self.downloads, ignore_errors=True)
            self.downloads = None
        for folder in self.cached:
            shutil.rmtree(folder, ignore_errors=True)
        self.cached.clear()


def session_file(runtime: Runtime, slot: SessionSlot) -> Path | None:
    """The recording this tab's session writes, if it is a plain file directly in the
    record folder: the only file the download button ever serves."""
    folder = runtime.settings.record_dir
    session = slot.session
    if folder is None or session is None:
        return None
    if session.recorder is not None:
        slot.recorded = session.recorder.path
    path = slot.recorded
    if path is None or path.is_symlink() or not path.is_file():
        return None
    return path if path.resolve().parent == folder.resolve() else None


def download_copy(slot: SessionSlot, path: Path) -> tuple[Path, int]:
    """A copy of ``path`` in the tab's own temporary folder, cut after its last complete
    line (a turn may be writing), for Gradio to serve; and how many turns it holds."""
    if slot.downloads is None:
        slot.downloads = Path(tempfile.mkdtemp(prefix="streamchat-download-"))
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    copy = slot.downloads / path.name
    copy.write_bytes(data)
    return copy, data.count(b'{"kind":"turn"')


def gradio_cache_folder(copy: Path, component: gr.components.Component) -> Path:
    """The folder where Gradio will keep its own copy of ``copy`` when a component's
    value is set to it (``processing_utils.save_file_to_cache``: cache / content hash)."""
    return Path(component.GRADIO_CACHE) / processing_utils.hash_file(copy)


def graceful_stop(demo: gr.Blocks, chat: gr.ChatInterface) -> None:
    """Let Stop end the turn from inside (``ChatSession.turn``'s ``stop``) rather than have Gradio cancel
    it: a cancelled event never sends its last value, and ChatInterface then saves the
    history from whatever the page showed, racing any handler that marks the answer.
    Closing the tab still cancels the turn."""
    for fn in demo.fns.values():
        if fn.fn is None and fn.cancels and (chat.textbox._id, "stop") in fn.targets:
            fn.cancels = []


def history_secret(runtime: Runtime) -> str:
    """The key saved chats are encrypted with in the browser: ``STREAMCHAT_HISTORY_SECRET``,
    else one derived from the API key when there is one (a secret of the server's), else
    from the configuration (a replay: nothing private to protect). Stable across
    restarts of the same app, so a chat saved before one opens after it."""
    given = os.environ.get("STREAMCHAT_HISTORY_SECRET")
    seed = given or f"streamchat-saved-chats:{runtime.settings.api_key or ''}:{runtime.config.sha256}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def after_each_turn(demo: gr.Blocks, chat: gr.ChatInterface, fn: Any, inputs: list[Any], outputs: list[Any]) -> None:
    """Run ``fn`` once a turn is over (submit, retry, undo or example): chained after the
    step where ChatInterface saves the history. ChatInterface exposes no such event, and
    its state's ``change`` never fires (that step is not queued)."""
    saved = [chat.chatbot_state._id, chat.chatbot_value._id]
    for fn_id, block_fn in list(demo.fns.items()):
        if [block._id for block in block_fn.outputs] == saved:
            then = EventListener("then", trigger_after=fn_id, trigger_only_on_success=True, has_trigger=False)
            then.listener(chat.chatbot_state, fn, inputs, outputs, api_visibility="private", show_progress="hidden")


def banner_text(runtime: Runtime, session: ChatSession | None = None, asked: int = 0) -> str:
    """The banner: the mode (``asked`` user messages into a replay, it offers the next
    recorded prompt), and on a Space how to get a private copy."""
    return space_banner(runtime, mode_banner(runtime, session, asked))


def mode_banner(runtime: Runtime, session: ChatSession | None = None, asked: int = 0) -> str:
    settings = runtime.settings
    if runtime.live:
        parts = [
            f"🟢 **Live** · backend `{runtime.config.backend}` · model `{runtime.config.model}`"
            f" · server `{server_label(settings.base_url)}`"
        ]
        if settings.record_dir is None:
            parts.append("recording off")
        elif session is not None and not session.record:
            parts.append("recording paused for this chat")
        else:
            parts.append(f"🔴 recording this chat to `{settings.record_dir.name}/`")
        return " · ".join(parts)
    name = session.recording_name if session else (runtime.recordings[0] if runtime.recordings else None)
    if name is None or runtime.library is None:
        return "⚠️ **No API key and no recording**: set `OPENAI_API_KEY` to chat live."
    recording = runtime.library.load(name)
    speed = session.speed if session else settings.speed
    origin = (
        "synthetic: made up in the API's wire format, not captured from a live model"
        if recording.synthetic
        else _imported_origin(recording.header)
        if recording.header.get("source") == "imported"
        else "recorded from a live session"
    )
    pace = "instant" if speed == 0 else f"{speed:g}×"
    head = f"▶️ **Replay** of `{name}` ({origin}) · API `{recording.api}` · speed {pace} · "
    if asked == 0:
        return head + "no `OPENAI_API_KEY` is set, so answers come from recordings; ask one of the example prompts."
    following = next_prompts(recording.prompts, asked)
    if not following:
        return head + "that was the recording's last turn: pick another recording, or clear the chat to start again."
    return head + "next recorded prompt: " + ", then ".join(f"“{p}”" for p in following)


def asked_from(runtime: Runtime, session: ChatSession, history: list[dict[str, Any]] | None) -> int:
    """How many of the chat's messages the session's recording answered (others got
    "nothing in it answers" and do not move the replay on)."""
    if runtime.library is None or session.recording_name is None:
        return 0
    recorded = {normalize(p) for p in runtime.library.load(session.recording_name).prompts}
    asked = 0
    for message in history or []:
        content = message.get("content")
        if isinstance(content, list):  # Gradio's parts form: [{"type": "text", "text": ...}]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if message.get("role") == "user" and isinstance(content, str) and normalize(content) in recorded:
            asked += 1
    return asked


def next_prompts(prompts: list[str], asked: int) -> list[str]:
    """What to ask after ``asked`` messages: the recording's next prompt (its later ones
    too when it repeats, distinct, at most two)."""
    return list(dict.fromkeys(prompts[asked:]))[:2] if asked < len(prompts) else []


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else getattr(message, "role", None)


def _imported_origin(header: dict[str, Any]) -> str:
    """Where an imported recording's capture came from (its header's ``provenance``)."""
    given = header.get("provenance")
    prov: dict[str, Any] = given if isinstance(given, dict) else {}
    where = prov.get("url") or " ".join(
        str(part) for part in (prov.get("repository"), prov.get("path"), (prov.get("commit") or "")[:12]) if part
    )
    return f"imported from a real capture: {where}" if where else "imported from a real capture"


def file_types(runtime: Runtime) -> list[str]:
    """What the upload button offers: the config's accepted types as extensions."""
    types = runtime.config.attachments.types
    return [f".{t}" for t in types] + ([".jpg"] if "jpeg" in types else [])


def keep_file_names(textbox: gr.MultimodalTextbox) -> None:
    """The multimodal textbox hands the chat function each file's path *and* name, and
    lets every file through: ``ChatApp.respond`` checks each one (``attachments.inspect``,
    by its bytes) and answers a refused one with one line in the chat, where Gradio's own
    check would raise an error toast. Its ``file_types`` still filter the browser's
    file picker."""

    def preprocess(payload: Any) -> Any:
        if payload is None:
            return None
        return {"text": payload.text, "files": [{"path": f.path, "orig_name": f.orig_name} for f in payload.files]}

    textbox.preprocess = preprocess  # type: ignore[method-assign]


def attachment_line(exc: att.AttachmentError) -> list[dict[str, Any]]:
    """A refused file's line: one status bubble (the app's, not the model's words)."""
    line = f"❌ {exc}"
    return [{"role": "assistant", "content": "", "metadata": {"title": line, "status": "done"}}]


def _examples(runtime: Runtime, name: str | None) -> list[str]:
    if runtime.live or runtime.library is None or name is None:
        return list(runtime.config.ui.examples)
    return list(dict.fromkeys(runtime.library.load(name).prompts))


def _example_messages(runtime: Runtime, name: str | None) -> list[dict[str, Any]]:
    """The examples as the chat offers them (``{"text": …}``): a recording's with its
    files' thumbnails."""
    if runtime.live or runtime.library is None or name is None:
        return [{"text": p} for p in _examples(runtime, name)]
    return example_messages(runtime.library.load(name))


def build_demo(runtime: Runtime) -> gr.Blocks:
    """The app as served; also starts the optional dataset upload of recordings."""
    try:
        start_dataset_sync(runtime)
    except Exception as exc:  # the chat works without it
        log.warning("could not start the dataset upload of recordings: %s", exc)
    warn_if_unprotected(runtime)
    return ChatApp(runtime).build()


class ChatApp:
    """The page's parts and their handlers: one small builder per part (banner row,
    recording or replay controls, the chat) and one method per event."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.guard = Guard(
            settings.rate_limits, settings.daily_requests, AllowList(settings.allowed_users, settings.allowed_orgs)
        )
        self.votes = FeedbackLog((settings.record_dir or DEFAULT_RECORDINGS) / FEEDBACK_FILE, runtime.record_lock)
        self.slots: dict[str, SessionSlot] = {}
        """Tabs by session hash, so a closed tab's download copies go with it."""
        self.first = runtime.recordings[0] if runtime.recordings else None
        self.download: gr.DownloadButton | None = None

    # -- the page -------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        runtime = self.runtime
        with gr.Blocks(title=runtime.config.ui.title, fill_height=True) as demo:
            slot = gr.State(SessionSlot, delete_callback=self.discard)
            banner = gr.Markdown(banner_text(runtime), elem_classes="streamchat-banner", elem_id="mode-banner")
            self._account_row()
            if runtime.live:
                record, download = self._live_controls()
            elif runtime.recordings:
                picker, speed, demo_controls = self._replay_controls()
            chat = self._chat(slot)
            self._wire_session(demo, chat, slot)
            if runtime.live:
                self._wire_recording(chat, slot, banner, record, download)
            elif runtime.recordings:
                self._wire_replay(demo, chat, slot, banner, picker, speed)
                wire(runtime, demo, chat, demo_controls, picker, speed, banner, slot, lambda s: banner_text(runtime, s))
        return demo

    def _account_row(self) -> None:
        """Sign-in (an allow-list) and Duplicate (on a Space), when they apply."""
        if on_space() or sign_in_offered(self.runtime):
            with gr.Row():
                if sign_in_offered(self.runtime):
                    gr.LoginButton(elem_id="sign-in", size="md", scale=0)
                if on_space():
                    gr.DuplicateButton(elem_id="duplicate", size="md", scale=0)

    def _live_controls(self) -> tuple[gr.Checkbox, gr.DownloadButton]:
        with gr.Row(equal_height=True):
            allowed = self.runtime.settings.record_dir is not None
            record = gr.Checkbox(
                value=allowed,
                label="Record this chat",
                info=None if allowed else RECORD_OFF_SPACE if on_space() else RECORD_OFF,
                interactive=allowed,
                elem_id="record-toggle",
                scale=3,
            )
            download = gr.DownloadButton(
                "Download recording", visible=False, elem_id="download-recording", size="md", scale=1, min_width=240
            )
        self.download = download
        return record, download

    def _replay_controls(self) -> tuple[gr.Dropdown, gr.Slider, Any]:
        runtime = self.runtime
        with gr.Row(equal_height=True):
            picker = gr.Dropdown(
                choices=runtime.recordings, value=self.first, label="Recording", elem_id="recording-picker", scale=3
            )
            speed = gr.Slider(
                0, 4, value=runtime.settings.speed, step=0.25, label="Replay speed (0 = instant)", elem_id="replay-speed", scale=2
            )
        return picker, speed, add_controls(runtime, self.first)

    def _chat(self, slot: gr.State) -> gr.ChatInterface:
        config = self.runtime.config
        examples = _example_messages(self.runtime, self.first)
        chat = gr.ChatInterface(
            self.respond,
            additional_inputs=[slot],
            api_name="chat",
            title=config.ui.title,
            description=config.ui.description or None,
            examples=[[e, None] for e in examples] or None,
            multimodal=True,
            textbox=gr.MultimodalTextbox(
                file_types=file_types(self.runtime),
                file_count="multiple",
                placeholder="Type a message, or add files with the button or by dropping them here…",
                show_label=False,
                scale=7,
                autofocus=True,
                submit_btn=True,
                stop_btn=True,
                elem_id=MESSAGE_BOX,
            ),
            concurrency_limit=CONCURRENCY_LIMIT,
            fill_height=True,
            flagging_mode="never",  # votes go through on_like, into the recording
            # Retry, Undo and Edit change the history the next turn arrives with, and a
            # saved chat comes back from the browser's storage: the backends bring the
            # remote state in line with it (docs/architecture.md, "Conversation state").
            chatbot=gr.Chatbot(label="Chat", scale=1, editable="user"),
            editable=True,
            save_history=True,
        )
        keep_file_names(chat.textbox)  # type: ignore[arg-type]
        # Saved chats are encrypted in the browser with a key Gradio draws anew at each
        # launch; a stable one lets a chat saved before a restart open after it.
        chat.saved_conversations.secret = history_secret(self.runtime)
        return chat

    def _wire_session(self, demo: gr.Blocks, chat: gr.ChatInterface, slot: gr.State) -> None:
        """A tab's life: opened, cleared, stopped, closed; and votes on live answers."""
        demo.load(self.on_load, [slot], None, api_visibility="private")
        demo.unload(self.on_unload)
        chat.chatbot.clear(self.on_clear, [slot], None, api_visibility="private")
        graceful_stop(demo, chat)
        chat.textbox.stop(self.on_stop, [slot], None, api_visibility="private", queue=False)
        if self.runtime.live:
            chat.chatbot.like(self.on_like, [chat.chatbot, slot], None, api_visibility="private")

    def _wire_recording(
        self, chat: gr.ChatInterface, slot: gr.State, banner: gr.Markdown, record: gr.Checkbox, download: gr.DownloadButton
    ) -> None:
        record.change(self.on_record, [record, slot], [banner], api_visibility="private")
        if self.runtime.settings.record_dir is not None:
            # Only when there can be a file: every streamed update fires this event
            # (browser work on each update, and a queue slot held through the turn).
            chat.chatbot.change(self.refresh_download, [slot], [download], api_visibility="private", trigger_mode="always_last")

    def _wire_replay(
        self, demo: gr.Blocks, chat: gr.ChatInterface, slot: gr.State, banner: gr.Markdown, picker: gr.Dropdown, speed: gr.Slider
    ) -> None:
        picker.change(self.on_pick, [picker, speed, slot], [chat.chatbot, chat.chatbot_state, banner], api_visibility="private")
        after_each_turn(demo, chat, self.on_turn_end, [slot], [banner])
        speed.change(self.on_speed, [speed, slot], [banner], api_visibility="private")

    # -- a turn ---------------------------------------------------------------------

    def refusal(self, message: str, request: Any, files: int = 0) -> Refusal | None:
        """The guard's answer for a message that would reach the provider (live only:
        a replay spends nothing). Each file counts as one request more."""
        if not self.runtime.live or not self.guard.active or not (message.strip() or files):
            return None
        profile = signed_in(request)
        visitor = visitor_of(request, profile)
        refused = self.guard.admit(visitor, profile, cost=1 + files)
        if refused is not None:
            log.info("refused a message from %s: %s", visitor.split(":")[0], refused.reason)
        return refused

    async def respond(self, message: Any, history: list[dict[str, Any]], slot: SessionSlot) -> AsyncIterator[Any]:
        """One turn: the multimodal textbox's ``{"text", "files"}`` (or a plain string)."""
        runtime = self.runtime
        message, files = att.from_message(message)
        session = slot.get(runtime)
        runtime.loop = asyncio.get_running_loop()
        await slot.demo.controls.end_running()  # a visitor's message takes over from a demo
        # ChatInterface does not pass gr.Request to its fn; Gradio's request context
        # gives the session hash, so API clients' sessions end on unload too.
        request = LocalContext.request.get(None)
        if request is not None and request.session_hash:
            runtime.sessions[request.session_hash] = session
            self.slots[request.session_hash] = slot
        position = sum(1 for m in history if _role(m) == "user")
        limits = runtime.config.attachments
        try:  # every file checked before anything is counted, sent or recorded
            att.check_count(len(files), limits)
            # Read in a thread: a few large files would hold up every other tab's stream.
            attached = await asyncio.to_thread(lambda: tuple(att.inspect(p, limits, name=n) for p, n in files)) if files else ()
        except att.AttachmentError as exc:
            slot.local.add(position)
            yield attachment_line(exc)
            return
        refused = self.refusal(message, request, len(attached))
        if refused is not None:  # answered at once; nothing reaches the provider
            slot.local.add(position)
            hint = " Or duplicate this Space and chat on your own key." if on_space() and refused.retry_after else ""
            yield refused.message + hint
            return
        slot.local.discard(position)  # a place freed by undo or retry holds a new answer
        slot.recorded_turns.pop(position, None)
        writer = session.recorder
        begun = writer.turn_number + 1 if writer is not None else 0
        value: Any = None
        slot.idle.clear()
        slot.stop.clear()
        slot.asked = asked_from(runtime, session, [*history, {"role": "user", "content": message}])
        try:
            async for value in session.turn(message, history, stop=slot.stop, attachments=attached):
                yield value
        finally:
            slot.idle.set()
            if session.recorder is not None and session.recorder.turn_number + 1 > (begun if session.recorder is writer else 0):
                slot.recorded_turns[position] = (session.recorder, session.recorder.turn_number)
        past = session.replayed  # the recorded turn that answered (text and files)
        if past is not None and past.feedback is not None and value is not None:  # replay shows the recorded vote
            yield with_past_vote(value, past.feedback)

    # -- a tab's life -----------------------------------------------------------------

    def discard(self, slot: SessionSlot) -> None:
        slot.cleanup()
        if slot.session is not None:
            self.runtime.discard(slot.session)

    async def on_load(self, slot: SessionSlot, request: gr.Request) -> None:
        session = slot.get(self.runtime)
        if request is not None and request.session_hash:
            self.runtime.sessions[request.session_hash] = session

    async def on_unload(self, request: gr.Request) -> None:
        slot = self.slots.pop(request.session_hash or "", None)
        if slot is not None:
            slot.cleanup()
        session = self.runtime.sessions.pop(request.session_hash or "", None)
        if session is not None:
            await session.close()

    async def on_clear(self, slot: SessionSlot) -> None:
        slot.recorded_turns.clear()
        slot.local.clear()
        slot.feedback_id = secrets.token_hex(8)
        await slot.get(self.runtime).reset()

    async def on_stop(self, slot: SessionSlot) -> None:  # async: on the loop the turn's events live on
        if not slot.idle.is_set():
            slot.stop.set()

    async def on_like(self, data: gr.LikeData, history: list[Any], slot: SessionSlot) -> None:
        """A thumb on an answer: into the chat's recording when it holds that turn, else
        into the feedback log. Async, so it writes on the loop the turns write on."""
        index = data.index if isinstance(data.index, int) else data.index[0]
        position = sum(1 for m in history[:index] if _role(m) == "user") - 1
        if position < 0 or position in slot.local:
            return
        value = "like" if data.liked is True else "dislike" if data.liked is False else None
        recorded = slot.recorded_turns.get(position)
        if recorded is not None and recorded[0].feedback(recorded[1], value):
            return
        config = self.runtime.config
        self.votes.add(slot.feedback_id, position, value, api=config.backend, model=config.model)

    # -- live: recording --------------------------------------------------------------

    def on_record(self, value: bool, slot: SessionSlot) -> str:
        session = slot.get(self.runtime)
        session.record = bool(value) and self.runtime.settings.record_dir is not None
        return banner_text(self.runtime, session)

    async def refresh_download(self, slot: SessionSlot, request: gr.Request) -> Any:
        """Offer the session's file as it is once the running turn has ended
        (the chatbot changes all along a turn; later calls wait, then skip)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slot.idle.wait(), DOWNLOAD_WAIT)
        path = session_file(self.runtime, slot)
        if path is None or self.download is None:
            return gr.skip()
        size = path.stat().st_size
        if slot.offered == (path, size):
            return gr.skip()
        slot.offered = (path, size)
        copy, turns = download_copy(slot, path)
        slot.cached.add(gradio_cache_folder(copy, self.download))
        if request is not None and request.session_hash:
            self.slots[request.session_hash] = slot
        label = f"Download recording ({turns} turn{'' if turns == 1 else 's'})"
        return gr.DownloadButton(label=label, value=str(copy), visible=True)

    # -- replay: picker, speed, next prompt ----------------------------------------------

    async def on_pick(self, name: str, value: float, slot: SessionSlot) -> tuple[Any, Any, Any]:
        runtime = self.runtime
        if name not in runtime.recordings:  # only names this server listed
            raise gr.Error("Unknown recording.")
        if slot.demo.own_pick(name):  # autoplay showing what it plays
            return gr.skip(), gr.skip(), gr.skip()
        await slot.demo.controls.end_running()
        session = slot.get(runtime)
        await session.reset(recording=name, speed=value)
        prompts: list[Any] = _example_messages(runtime, name)
        return gr.Chatbot(value=[], examples=prompts), [], banner_text(runtime, session)

    async def on_speed(self, value: float, slot: SessionSlot) -> str:
        session = slot.get(self.runtime)
        session.set_speed(value)
        return banner_text(self.runtime, session)

    async def on_turn_end(self, slot: SessionSlot) -> str:
        """The examples vanish after the first answer: the banner offers the next prompt."""
        return banner_text(self.runtime, slot.get(self.runtime), slot.asked)
