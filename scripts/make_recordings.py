"""Generate the bundled recordings in recordings/.

They cannot be captured from the live API here, so they are made up in each API's wire
format (``streamchat.testing.synth``, shaped after published captures and checked against
the SDK's types) and their header says ``source: synthetic``.
The output is deterministic: tests regenerate it and compare with the files.

    python -m scripts.make_recordings [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from streamchat.testing import synth
from streamchat.testing.images import encode_png
from streamchat.tools import format_result, load_handler

ROOT = Path(__file__).resolve().parent.parent

CREATED = "2026-11-25T00:00:00Z"
MODEL = "gpt-5-mini"


Turn = synth.SynthTurn


def lines(api: str, title: str, description: str, turns: list[Turn]) -> list[dict[str, Any]]:
    return synth.recording_lines(api, turns, title=title, description=description, model=MODEL, created=CREATED)


def text_turn(api: str, user: str, answer: str, *, seed: int, start: float = 0.0, size: int = 4, **kw: Any) -> Turn:
    deltas = synth.split_text(answer, size)
    builder: Any = {"responses": synth.responses_stream, "assistants": synth.assistants_stream, "chat": synth.chat_stream}[api]
    return Turn(user, [synth.paced(builder(deltas, **kw), start=start, seed=seed)])


BUILDERS: dict[str, Any] = {
    "responses": synth.responses_stream,
    "assistants": synth.assistants_stream,
    "chat": synth.chat_stream,
}
NOW = "2026-11-25T03:04:00+00:00"
"""The moment the tool recordings ask the time at: their outputs never change."""


def run_demo_tool(name: str, **args: Any) -> str:
    """What the app would send back for a demo tool call (the same handler and formatting)."""
    return format_result(load_handler(f"streamchat.demo_tools:{name}")(**args))


def tool_turn(
    api: str,
    user: str,
    calls: list[tuple[synth.FunctionCall, str]],
    answer: str,
    *,
    seed: int,
    run_time: float = 0.04,
) -> Turn:
    """One turn of the tool loop: a stream that asks for ``calls``, their outputs
    (each ``run_time`` s after the last), then the stream that answers."""
    builder = BUILDERS[api]
    funcs = [call for call, _ in calls]
    ask: dict[str, Any] = {"calls": funcs}
    reply: dict[str, Any] = {}
    if api == "assistants":
        run_id = synth.new_id("run")
        ask.update(run_id=run_id, end="requires_action")
        reply.update(run_id=run_id, continuing=True)
    elif api == "chat":
        ask.update(finish_reason="tool_calls")
    first = synth.paced(builder(**ask), seed=seed)
    t = first[-1][0]
    outputs = []
    for call, output in calls:
        t = round(t + run_time, 4)
        outputs.append((call.call_id, output, t))
    second = synth.paced(builder(synth.split_text(answer, 4), **reply), start=t + 0.01, seed=seed + 100)
    return Turn(user, [first, second], tool_outputs=outputs)


def builtin_turn(api: str, user: str, deltas: list[str], *, seed: int, **kw: Any) -> Turn:
    return Turn(user, [synth.paced(BUILDERS[api](deltas, **kw), seed=seed)])


FIB_CODE = """def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

print([fib(n) for n in range(10)])
print(fib(20))
"""


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
    add_tool_recordings(files)
    return files


def add_tool_recordings(files: dict[str, list[dict[str, Any]]]) -> None:
    """The tool recordings (08-…), after the others so their ids stay as they were."""
    tokyo = run_demo_tool("get_time", timezone="Asia/Tokyo", now=NOW)
    tokyo_answer = "It is **12:04** in Tokyo right now (Wednesday, 25 November 2026, UTC+9)."
    for n, api, title in (
        ("08", "responses", "Responses"),
        ("09", "assistants", "Assistants"),
        ("10", "chat", "Chat Completions"),
    ):
        call = synth.FunctionCall("get_time", '{"timezone":"Asia/Tokyo"}')
        files[f"{n}-tool-call-{api}"] = lines(
            api,
            f"A function call ({title})",
            f"The model calls the local get_time tool; its recorded output is served back and the answer follows ({title} tool loop).",
            [tool_turn(api, "What time is it in Tokyo?", [(call, tokyo)], tokyo_answer, seed=10 + int(n))],
        )
    paris = run_demo_tool("get_time", timezone="Europe/Paris", now=NOW)
    files["11-parallel-tool-calls"] = lines(
        "chat",
        "Two tool calls in parallel",
        "Chat Completions: two get_time calls in one response, told apart by their index, answered in one round.",
        [
            tool_turn(
                "chat",
                "What time is it in Tokyo and in Paris?",
                [
                    (synth.FunctionCall("get_time", '{"timezone":"Asia/Tokyo"}'), tokyo),
                    (synth.FunctionCall("get_time", '{"timezone":"Europe/Paris"}'), paris),
                ],
                "It is **12:04** in Tokyo and **04:04** in Paris (25 November 2026). Tokyo is eight hours ahead.",
                seed=21,
            )
        ],
    )
    files["12-code-interpreter"] = lines(
        "responses",
        "The code interpreter",
        "Responses API: the code streams into a code block, then its logs; the answer follows.",
        [
            builtin_turn(
                "responses",
                "What is the 20th Fibonacci number? Use Python.",
                synth.split_text("The 20th Fibonacci number is **6765** (counting F(0) = 0 and F(1) = 1).", 4),
                builtins=[synth.CodeInterpreterCall(FIB_CODE, logs="[0, 1, 1, 2, 3, 5, 8, 13, 21, 34]\n6765\n", chunks=12)],
                seed=22,
            )
        ],
    )
    refund = "Refunds are paid within **14 days** of the returned item arriving. Returns are accepted for 30 days with a receipt."
    cut = refund.index(". Returns") + 1
    files["13-file-search"] = lines(
        "responses",
        "File search with citations",
        "Responses API: a file_search call, then an answer whose file_citation annotations become numbered footnotes.",
        [
            builtin_turn(
                "responses",
                "How long do refunds take?",
                synth.split_text(refund, 4),
                builtins=[synth.FileSearchCall(["refund processing time", "return policy"])],
                annotations=[
                    {"type": "file_citation", "file_id": "file-handbook01", "filename": "handbook.pdf", "index": cut},
                    {"type": "file_citation", "file_id": "file-faq02", "filename": "faq.md", "index": len(refund)},
                ],
                seed=23,
            )
        ],
    )
    first, second = refund[:cut], refund[cut:]
    markers = ["【4:0†source】", "【4:1†source】"]
    deltas = [*synth.split_text(first, 4), markers[0], *synth.split_text(second, 4), markers[1]]
    search = synth.FileSearchCall(
        results=[("file-handbook01", "handbook.pdf", 0.91), ("file-faq02", "faq.md", 0.74)], call_id="call_search01"
    )
    files["14-file-search-assistants"] = lines(
        "assistants",
        "File search with 【】 source markers",
        "Assistants API: a file_search step, then text whose 【4:0†source】 markers (with file_citation annotations) become numbered footnotes.",
        [
            builtin_turn(
                "assistants",
                "How long do refunds take?",
                deltas,
                builtins=[search],
                annotations=[
                    {"type": "file_citation", "text": markers[0], "file_citation": {"file_id": "file-handbook01"}},
                    {"type": "file_citation", "text": markers[1], "file_citation": {"file_id": "file-faq02"}},
                ],
                seed=24,
            )
        ],
    )
    files["15-reasoning-summary"] = lines(
        "responses",
        "A reasoning summary",
        "Responses API: the reasoning summary streams into a collapsible thinking bubble, apart from the answer.",
        [
            builtin_turn(
                "responses",
                "Is 221 a prime number?",
                synth.split_text("No. **221 = 13 × 17**, so it is not prime.", 4),
                summary_parts=[
                    synth.split_text(
                        "**Checking small factors**\n\nIt is odd, its digits sum to 5, and it does not end in 0 or 5.", 6
                    ),
                    synth.split_text("**Found a factor**\n\n√221 is just under 15, and 13 × 17 = 221.", 6),
                ],
                seed=25,
            )
        ],
    )
    tallest = "The tallest building in the world is the **Burj Khalifa** in Dubai, at 828 m."
    wiki = "https://en.wikipedia.org/wiki/Burj_Khalifa"
    files["16-web-search"] = lines(
        "responses",
        "Web search with a link",
        "Responses API: a web_search call shown while it runs, then an answer whose url_citation becomes a linked footnote.",
        [
            builtin_turn(
                "responses",
                "What is the tallest building in the world?",
                synth.split_text(tallest, 4),
                builtins=[synth.WebSearchCall("tallest building in the world", sources=[wiki])],
                annotations=[
                    {
                        "type": "url_citation",
                        "url": wiki,
                        "title": "Burj Khalifa - Wikipedia",
                        "start_index": 0,
                        "end_index": len(tallest),
                    }
                ],
                seed=26,
            )
        ],
    )

    add_multimodal(files)


def bar_chart_png() -> bytes:
    """A 160×100 PNG: three bars (red, green, blue) rising left to right on white, drawn
    here so the image question's recording carries the very bytes it asks about."""
    width, height = 160, 100
    bars = [(20, 35, (220, 50, 50)), (65, 60, (40, 170, 70)), (110, 85, (50, 90, 220))]
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            colour = (255, 255, 255)
            for left, tall, rgb in bars:
                if left <= x < left + 30 and y >= height - 5 - tall and y < height - 5:
                    colour = rgb
            if y == height - 5:
                colour = (60, 60, 60)  # the baseline
            row += bytes(colour)
        rows.append(bytes(row))
    return encode_png(width, height, rows)


LAUNCH_PLAN = """# Aurora launch plan

- **Launch date:** Tuesday 16 March, 09:00 UTC.
- **Go/no-go call:** Monday 15 March, 16:00 UTC; Priya Raman (engineering) and
  Tomás Ortega (support) must both say go.
- **Sign-off:** Dana Whitfield, head of product, signs off on the release notes.
- **Rollback:** the previous build stays deployable for 48 hours after launch.
"""


def add_multimodal(files: dict[str, list[dict[str, Any]]]) -> None:
    """Files in: an image question, and a question over a document the user uploads
    (file_search over the session's own vector store)."""
    chart = bar_chart_png()
    answer = (
        "It's a simple bar chart on a white background: three bars rising from left to right — "
        "a short **red** one, a medium **green** one and the tallest, **blue**, on a dark baseline. "
        "There are no labels or axes, so it shows a trend (each value higher than the last) rather than exact figures."
    )
    image_turn = text_turn("responses", "What does this chart show?", answer, seed=31)
    image_turn.attachments = [("bar-chart.png", "image/png", chart)]
    files["17-image-question"] = lines(
        "responses",
        "An image question",
        "Responses API: a question about an attached image (sent as input_image); the image is kept in the recording and shown again on replay.",
        [image_turn],
    )
    said = (
        "The launch is on **Tuesday 16 March at 09:00 UTC**, and Dana Whitfield, head of product, signs off on the release notes."
    )
    search = synth.FileSearchCall(["launch date", "sign-off"], results=[("file-launchplan01", "launch-plan.md", 0.93)])
    doc_turn = builtin_turn(
        "responses",
        "When is the launch, and who signs off?",
        synth.split_text(said, 4),
        builtins=[search],
        annotations=[{"type": "file_citation", "file_id": "file-launchplan01", "filename": "launch-plan.md", "index": len(said)}],
        seed=32,
    )
    doc_turn.attachments = [("launch-plan.md", "text/markdown", LAUNCH_PLAN.encode("utf-8"))]
    files["18-file-search-upload"] = lines(
        "responses",
        "A question over an uploaded document",
        "Responses API: the user attaches a document; it goes to the session's own vector store, file_search finds it, and the answer cites it.",
        [doc_turn],
    )


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, objs in build().items():
        path = out_dir / f"{name}.jsonl"
        path.write_text(synth.dump_lines(objs), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "recordings"
    for p in write(target):
        print(p.relative_to(target.parent) if p.is_relative_to(target.parent) else p)
