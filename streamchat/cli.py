"""The seed's terminal chat, in Python: type a message, watch the reply stream in, `q`
quits. Same backends, recorder and player as the browser UI; the remote thread and any
assistant it created are deleted on exit, Ctrl-C included."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

from .session import ChatSession, Runtime
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
            if metadata is None:
                content = str(message["content"])
                self.out.write(content[self.printed :])
                self.printed = len(content)
                if self.index == len(messages) - 1 and not final:
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


async def _turn(session: ChatSession, message: str, history: list[dict[str, Any]], out: TextIO) -> str:
    transcript = Transcript()
    printer = _Printer(out)
    async for _ in session.turn_events(message, history, transcript):
        printer.update(transcript.snapshot())
    printer.update(transcript.snapshot(), final=True)
    out.write("\n\n")
    out.flush()
    return transcript.text


async def chat_loop(runtime: Runtime, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    await runtime.start()
    session = runtime.new_session()
    runtime.sessions["cli"] = session
    history: list[dict[str, Any]] = []
    if not runtime.live and session.recording_name and runtime.library is not None:
        prompts = runtime.library.load(session.recording_name).prompts
        out.write(f"Replaying “{session.recording_name}” (no OPENAI_API_KEY). Try: {' | '.join(dict.fromkeys(prompts))}\n")
    out.write("Type a message, or q to quit.\n")
    try:
        while True:
            out.write("> ")
            out.flush()
            line = await asyncio.to_thread(stdin.readline)
            if not line or line.strip() == "q":
                break
            message = line.rstrip("\n")
            if not message.strip():
                continue
            answer = await _turn(session, message, history, out)
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": answer}]
    finally:
        await runtime.shutdown()


def run_cli(runtime: Runtime) -> int:
    try:
        asyncio.run(chat_loop(runtime))
    except KeyboardInterrupt:
        print("\nbye", file=sys.stderr)
        return 130
    return 0
