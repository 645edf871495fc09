"""Generate the bundled recordings in recordings/.

They cannot be captured from the live API here, so they are made up in the exact wire
format of each API (``streamchat.synth``) and their header says ``source: synthetic``.
The output is deterministic: tests regenerate it and compare with the files.

    python scripts/make_recordings.py [OUT_DIR]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamchat import synth  # noqa: E402
from streamchat.recording import FORMAT, VERSION  # noqa: E402
from streamchat.sse import RawEvent  # noqa: E402

CREATED = "2026-11-25T00:00:00Z"
MODEL = "gpt-5-mini"


@dataclass
class Turn:
    user: str
    streams: list[list[tuple[float, RawEvent]]]
    status: str = "completed"
    tool_outputs: list[tuple[str, str, float]] = field(default_factory=list)


def lines(api: str, title: str, description: str, turns: list[Turn]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "kind": "header",
            "format": FORMAT,
            "version": VERSION,
            "api": api,
            "model": MODEL,
            "config_sha256": None,
            "created": CREATED,
            "app_version": "synthetic",
            "source": "synthetic",
            "title": title,
            "description": description,
        }
    ]
    for n, turn in enumerate(turns):
        out.append({"kind": "turn", "turn": n, "user": turn.user})
        outputs = list(turn.tool_outputs)
        end = 0.0
        for s, stream in enumerate(turn.streams):
            # tool outputs recorded after stream s, before stream s+1
            for t, raw in stream:
                line: dict[str, Any] = {"kind": "event", "turn": n, "stream": s, "t": t}
                if raw.event is not None:
                    line["event"] = raw.event
                line["data"] = raw.data
                out.append(line)
                end = max(end, t)
            if s + 1 < len(turn.streams):
                for call_id, output, t in outputs:
                    out.append({"kind": "tool_output", "turn": n, "t": t, "call_id": call_id, "output": output})
                outputs = []
        if turn.status is not None:
            out.append({"kind": "end", "turn": n, "t": round(end + 0.001, 4), "status": turn.status})
    return out


def text_turn(api: str, user: str, answer: str, *, seed: int, start: float = 0.0, size: int = 4, **kw: Any) -> Turn:
    deltas = synth.split_text(answer, size)
    builder = {"responses": synth.responses_stream, "assistants": synth.assistants_stream, "chat": synth.chat_stream}[api]
    return Turn(user, [synth.paced(builder(deltas, **kw), start=start, seed=seed)])


MARKDOWN_ANSWER = """## Streaming a reply, step by step

Server-sent events (SSE) keep one HTTP response open and send **small events** as they happen:

1. The client sends the request with `stream: true`.
2. The server answers `200` with `Content-Type: text/event-stream`.
3. Each event is a few `field: value` lines and a blank line.

A minimal reader in Python:

```python
import httpx

def read_events(url: str, payload: dict):
    with httpx.stream("POST", url, json=payload) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                if data == "[DONE]":
                    break
                yield data
```

And the same idea in the browser:

```javascript
const source = new EventSource("/events");
source.onmessage = (event) => {
  document.querySelector("#log").textContent += event.data;
};
```

| API | Terminal event |
|---|---|
| Responses | `response.completed` |
| Assistants | `thread.run.completed`, then `done` |
| Chat Completions | `finish_reason`, then `[DONE]` |

> Tip: render the growing text at most ~20 times a second; the browser re-renders the whole bubble each time.
"""


def build() -> dict[str, list[dict[str, Any]]]:
    synth.reset_ids()
    files: dict[str, list[dict[str, Any]]] = {}
    files["01-welcome"] = lines(
        "responses",
        "A short plain answer",
        "One question, one short answer, Responses API.",
        [
            text_turn(
                "responses",
                "Hello! What can you do?",
                "Hi! I stream my answers to you token by token, so you can start reading right away. Ask me a question, and watch the reply arrive as it is written. 🚀",
                seed=1,
            )
        ],
    )
    files["02-multi-turn"] = lines(
        "responses",
        "A multi-turn conversation",
        "Three turns that build on each other, Responses API with a conversation.",
        [
            text_turn(
                "responses",
                "Suggest a name for a cat.",
                "How about **Miso**? It is short, warm, and easy to call across a room.",
                seed=2,
            ),
            text_turn(
                "responses",
                "Why that one?",
                "Miso is a soft two-syllable word that cats respond to well, and it suits a cat with a golden or brown coat, like the soup it is named after.",
                seed=3,
            ),
            text_turn(
                "responses",
                "Give me two more like it.",
                "Two more in the same spirit: **Tofu** for a pale, calm cat, and **Mochi** for a round, cuddly one.",
                seed=4,
            ),
        ],
    )
    files["03-frieza-japanese"] = lines(
        "assistants",
        "The seed's persona: Frieza, in Japanese",
        "The seed article's assistant (Frieza from Dragon Ball, speaking Japanese), Assistants API.",
        [
            text_turn(
                "assistants",
                "自己紹介してください",
                "ホッホッホ…私はフリーザ。宇宙の帝王です。この戦闘力を前にして、まだ質問する勇気があるとは感心しますねぇ。🌌",
                seed=5,
                size=2,
            ),
            text_turn(
                "assistants",
                "地球をどう思いますか？",
                "地球ですか…。美しい星ですが、サイヤ人が住み着いているのは気に入りませんねぇ。まあ、高く売れそうではありますが。",
                seed=6,
                size=2,
            ),
        ],
    )
    files["04-markdown-long"] = lines(
        "responses",
        "A long answer with Markdown and code",
        "Headings, lists, two code blocks and a table, streamed in small deltas.",
        [text_turn("responses", "Explain server-sent events with code.", MARKDOWN_ANSWER, seed=7, size=5)],
    )
    partial = synth.split_text("Let me walk you through the history of the transistor. It began at Bell Labs in 1947, when", 4)
    files["05-interrupted-error"] = lines(
        "responses",
        "An answer interrupted by an error",
        "The stream sends part of the answer, then an error event: shown as interrupted, never as complete.",
        [
            Turn(
                "Tell me the history of the transistor.",
                [
                    synth.paced(
                        synth.responses_stream(
                            partial,
                            end="error",
                            error={"code": "server_error", "message": "The server had an error while processing your request."},
                        ),
                        seed=8,
                    )
                ],
                status="failed",
            )
        ],
    )
    files["06-backend-chat"] = lines(
        "chat",
        "The chat backend (Chat Completions)",
        "Chat Completions wire format, as vLLM, Ollama or llama.cpp send it: usage in a last chunk with no choices.",
        [
            text_turn(
                "chat",
                "What is an OpenAI-compatible server?",
                "It is any server that answers the same HTTP routes and JSON shapes as OpenAI's API, such as `/v1/chat/completions`, so existing clients work against it unchanged. vLLM, Ollama and llama.cpp all offer one.",
                seed=9,
            )
        ],
    )
    files["07-backend-assistants"] = lines(
        "assistants",
        "The assistants backend",
        "Assistants API wire format: thread.run.* and thread.message.delta events, ending with event: done.",
        [
            text_turn(
                "assistants",
                "What replaced the Assistants API?",
                "OpenAI replaced the Assistants API with the **Responses API**, with the Conversations API for multi-turn state. The Assistants API was shut down on 2026-08-26.",
                seed=10,
            )
        ],
    )
    return files


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, objs in build().items():
        path = out_dir / f"{name}.jsonl"
        text = "".join(json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n" for o in objs)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "recordings"
    for p in write(target):
        print(p.relative_to(target.parent) if p.is_relative_to(target.parent) else p)
