"""The seed's terminal chat, in Python: type a message, watch the reply stream in, `q`
quits; ``/file PATH`` attaches a file to the next message. Same backends, recorder and
player as the browser UI; the remote thread and any assistant it created are deleted on
exit, Ctrl-C included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from typing import Any, TextIO

from . import attachments as att
from .demo_mode import Controls, Timing, answer_messages, play
from .session import ChatSession, Runtime, user_content
from .transcript import Transcript


class _Printer:
    """Writes a transcript's growth: answer text as it streams, other bubbles as one
    line each once they are settled."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.index = 0
        self.printed = 0

    def update(self, messages: list[dict[str, Any]], final: bool = False) -> None:
        while self.index < len(messages):
            message = messages[self.index]
            metadata = message.get("metadata")
            if metadata is None and isinstance(message["content"], dict):  # a file a tool produced
                before = messages[self.index - 1] if self.index else None
                if before is not None and before.get("metadata") is None and isinstance(before["content"], str):
                    self.out.write("\n")  # after answer text, which ends without one
                file = message["content"].get("file") or {}
                self.out.write(f"[file: {file.get('orig_name')} saved at {file.get('path')}]\n")
            elif metadata is None:
                content = str(message["content"])
                self.out.write(content[self.printed :])
                self.printed = len(content)
                # The answer may still grow while only notices follow it (the transcript
                # keeps text below a notice in the answer above it).
                rest = messages[self.index + 1 :]
                if not final and all(m.get("metadata") and "id" not in m["metadata"] for m in rest):
                    break
            else:
                if metadata.get("status") == "pending" and not final:
                    break
                if self.printed:
                    self.out.write("\n")
                self.out.write(f"[{metadata.get('title', '')}]\n")
            self.index += 1
            self.printed = 0
        self.out.flush()


CLEANUP_TIMEOUT = 15.0
"""Seconds the exit may spend deleting the remote thread and assistant."""


class _Lines:
    """Lines typed on ``stdin``, read by a daemon thread: a blocked ``readline`` must
    not keep the program alive after Ctrl-C or ``q`` (``asyncio.to_thread`` would: the
    loop waits for its executor's threads before it exits)."""

    def __init__(self, stdin: TextIO) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        threading.Thread(target=self._read, args=(stdin,), daemon=True, name="cli-stdin").start()

    def _read(self, stdin: TextIO) -> None:
        while True:
            try:
                line = stdin.readline()
            except (OSError, ValueError):
                line = ""
            with contextlib.suppress(RuntimeError):  # the loop is gone: we are exiting
                self._loop.call_soon_threadsafe(self._queue.put_nowait, line)
            if not line:
                return

    async def get(self) -> str:
        """The next line with its newline; ``""`` at end of input."""
        return await self._queue.get()


async def _turn(
    session: ChatSession, message: str, history: list[dict[str, Any]], out: TextIO, files: tuple[att.Attachment, ...] = ()
) -> str:
    transcript = Transcript()
    printer = _Printer(out)
    try:
        async for _ in session.turn_events(message, history, transcript, files):
            printer.update(transcript.snapshot())
    finally:
        # Also on Ctrl-C: the turn's own cleanup has marked the answer as stopped.
        printer.update(transcript.snapshot(), final=True)
        out.write("\n\n")
        out.flush()
    return transcript.text


async def chat_loop(runtime: Runtime, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    """Chat until ``q``, end of input or Ctrl-C; then delete what was created remotely
    (the session's thread or conversation, and an assistant the app made)."""
    lines = _Lines(stdin)
    try:
        await runtime.start()
        session = runtime.new_session()
        runtime.sessions["cli"] = session
        history: list[dict[str, Any]] = []
        if not runtime.live and session.recording_name and runtime.library is not None:
            prompts = runtime.library.load(session.recording_name).prompts
            out.write(f"Replaying “{session.recording_name}” (no OPENAI_API_KEY). Try: {' | '.join(dict.fromkeys(prompts))}\n")
        out.write("Type a message, or q to quit; /file PATH attaches a file to the next message.\n")
        attached: list[att.Attachment] = []
        while True:
            out.write("> ")
            out.flush()
            line = await lines.get()
            if not line or line.strip() == "q":
                break
            message = line.rstrip("\r\n")
            if not message.strip():
                continue
            if message.split(maxsplit=1)[0] == "/file":
                out.write(attach(message[len("/file") :], attached, runtime.config.attachments) + "\n")
                continue
            files, attached = tuple(attached), []
            answer = await _turn(session, message, history, out, files)
            history += [{"role": "user", "content": user_content(message, files)}, {"role": "assistant", "content": answer}]
    finally:
        try:
            await asyncio.wait_for(runtime.shutdown(), CLEANUP_TIMEOUT)
        except TimeoutError:
            print("warning: could not finish deleting the remote thread and assistant", file=sys.stderr)


def attach(arg: str, attached: list[att.Attachment], limits: att.Limits) -> str:
    """``/file PATH``: check the file and add it to the next message's; the line to show."""
    path = arg.strip()
    if len(path) > 1 and path[0] == path[-1] and path[0] in "'\"":
        path = path[1:-1]
    if not path:
        return "Usage: /file PATH (the file goes with your next message)."
    try:
        att.check_count(len(attached) + 1, limits)
        found = att.inspect(os.path.expanduser(path), limits)
    except att.AttachmentError as exc:
        return f"❌ {exc}"
    attached.append(found)
    names = ", ".join(a.name for a in attached)
    size = f"{found.size / 1024:.1f} KiB" if found.size < 1024 * 1024 else f"{found.size / (1024 * 1024):.1f} MiB"
    return f"📎 {found.name} ({found.kind}, {found.mime}, {size}) attached. Your next message sends: {names}."


async def play_recording(runtime: Runtime, out: TextIO = sys.stdout) -> int:
    """``--play``: the recording's conversation played in the terminal as the chat shows
    a typed one: each prompt typed after "> ", then its answer streaming in, at the
    recorded pace (``--speed``, ``--max-gap``, ``--no-typing``); Ctrl-C stops."""
    if runtime.live or runtime.library is None or not runtime.recordings:  # before anything remote starts
        print("error: --play needs a recording to replay (--replay FILE)", file=sys.stderr)
        return 2
    try:
        await runtime.start()
        session = runtime.new_session()
        runtime.sessions["cli"] = session
        assert session.recording_name is not None
        recording = runtime.library.load(session.recording_name)
        out.write(f"Playing “{session.recording_name}” ({len(recording.turns)} turns). Ctrl-C stops.\n")
        out.flush()
        controls = Controls()
        session.set_clock(controls.clock)
        timing = Timing(typing=runtime.settings.typing, max_gap=runtime.settings.max_gap)
        turn, typed, printer = -1, "", _Printer(out)
        answering, last = False, None
        async for frame in play(recording, session, controls, timing=timing):
            if answering and (frame.state != "answering" or frame.turn != turn):
                printer.update(
                    answer_messages(frame.answer if frame.turn == turn and frame.answer is not None else last), final=True
                )
                out.write("\n\n")
                answering = False
            if frame.state in ("typing", "sending") and frame.turn != turn:
                turn, typed, printer = frame.turn, "", _Printer(out)
                out.write("> ")
            if frame.state == "typing":
                out.write(frame.draft[len(typed) :])
                typed = frame.draft
            elif frame.state == "sending":
                out.write(str(frame.history[-1]["content"])[len(typed) :] + "\n")
            elif frame.state == "answering":
                answering, last = True, frame.answer
                printer.update(answer_messages(frame.answer))
            out.flush()
        out.write("(end of the recording)\n")
        out.flush()
        return 0
    finally:
        try:
            await asyncio.wait_for(runtime.shutdown(), CLEANUP_TIMEOUT)
        except TimeoutError:
            print("warning: could not finish deleting the remote thread and assistant", file=sys.stderr)


def run_cli(runtime: Runtime) -> int:
    try:
        if runtime.settings.play:
            return asyncio.run(play_recording(runtime))
        asyncio.run(chat_loop(runtime))
    except KeyboardInterrupt:
        print("\nbye", file=sys.stderr)
        return 130
    return 0
