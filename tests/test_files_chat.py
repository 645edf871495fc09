"""Files in the chat, on the Chat Completions backend, over real HTTP to the fake server:
what reaches the provider (the logged request bodies), what is refused before any
request, the terminal chat's ``/file``, the rate limit's count of uploads, and the files
tools produce as the chat shows them.

Images are tiny real PNGs built in ``images.py``; the provider's view of one is checked
by decoding the data URL it received and hashing its bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import gradio as gr
import pexpect
import pytest
from browser_helpers import ROOT, app_env
from conftest import BASE_CONFIG, TEST_KEY, Fake, make_settings
from gradio_client import Client, handle_file
from images import PDF, png
from test_space_http import served

from streamchat import attachments as att
from streamchat import events as ev
from streamchat.backends.history import answered_key, content_files, history_key, visible
from streamchat.guard import Guard, Limit, parse_limits
from streamchat.session import ChatSession, Runtime, user_content
from streamchat.transcript import Transcript

FIXTURE = Path(__file__).parent / "fixtures" / "browser_history.json"


def chat_runtime(fake: Fake, extra: str = "", **kw: Any) -> Runtime:
    return Runtime(make_settings("chat", url=fake.url, config=BASE_CONFIG + extra, **kw))


def chat_bodies(fake: Fake) -> list[dict[str, Any]]:
    return [r.body for r in fake.core.requests("POST", "/chat/completions")]


def parts_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def image_hashes(message: dict[str, Any]) -> list[str]:
    """SHA-256 of each image the provider got in a message (its data URL decoded)."""
    out = []
    for part in parts_of(message):
        if part["type"] == "image_url":
            raw = att.data_url_bytes(part["image_url"]["url"])
            assert raw is not None, part["image_url"]["url"][:40]
            out.append(hashlib.sha256(raw).hexdigest())
    return out


def texts(message: dict[str, Any]) -> list[str]:
    return [p["text"] for p in parts_of(message) if p["type"] == "text"]


def browser_file(path: Path | str) -> dict[str, Any]:
    """A user's file part as Chromium sends it back in the history (the shape kept in
    tests/fixtures/browser_history.json: ``orig_name`` null, the path in Gradio's cache)."""
    return {
        "file": {
            "path": str(path),
            "url": f"http://127.0.0.1/gradio_api/file={path}",
            "size": None,
            "orig_name": None,
            "mime_type": "image/png",
            "is_stream": False,
            "meta": {"_type": "gradio.FileData"},
        },
        "alt_text": None,
        "type": "file",
    }


def browser_turn(files: list[Path], text: str, answer: str) -> list[dict[str, Any]]:
    user = [*(browser_file(f) for f in files), *([{"text": text, "type": "text"}] if text else [])]
    return [
        {"role": "user", "metadata": None, "content": user, "options": None},
        {"role": "assistant", "metadata": None, "content": [{"text": answer, "type": "text"}], "options": None},
    ]


async def turn(session: ChatSession, text: str, history: list[dict[str, Any]], *files: att.Attachment) -> Any:
    return [v async for v in session.turn(text, history, attachments=files)][-1]


def status_lines(value: Any) -> list[str]:
    return [m["metadata"]["title"] for m in value if m.get("metadata")] if isinstance(value, list) else []


# -- Chat Completions: images and text files in, PDFs refused ----------------------------


async def test_an_image_reaches_the_provider_as_a_data_url_and_goes_again_with_the_next_turn(fake: Fake, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(png(rgb=(10, 200, 30)))
    cat = att.inspect(image, att.Limits())
    session = chat_runtime(fake).new_session()
    assert await turn(session, "what is this", [], cat) == "Echo: what is this"
    [first] = chat_bodies(fake)
    asked = first["messages"][-1]
    assert image_hashes(asked) == [hashlib.sha256(image.read_bytes()).hexdigest()] == [cat.sha256]
    assert texts(asked) == ["what is this"]
    assert [p["type"] for p in asked["content"]] == ["image_url", "text"]  # files first, as the page shows them

    # The next turn comes with the history as the page sends it: the image goes again.
    history = browser_turn([image], "what is this", "Echo: what is this")
    assert await turn(session, "and now?", history) == "Echo: and now?"
    second = chat_bodies(fake)[-1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert image_hashes(second[1]) == [cat.sha256] and texts(second[1]) == ["what is this"]
    assert second[-1] == {"role": "user", "content": "and now?"}

    # Gradio's copy gone (its cache cleaned): the earlier message is its label and text.
    image.unlink()
    await turn(session, "still there?", history)
    assert chat_bodies(fake)[-1]["messages"][1] == {"role": "user", "content": "[file: cat.png]\n\nwhat is this"}
    await session.close()


async def test_an_image_alone_is_a_message(fake: Fake, tmp_path: Path) -> None:
    image = tmp_path / "dog.png"
    image.write_bytes(png(rgb=(1, 2, 3)))
    session = chat_runtime(fake).new_session()
    value = await turn(session, "", [], att.inspect(image, att.Limits()))
    assert "Type a message first" not in json.dumps(value)
    [body] = chat_bodies(fake)
    assert [p["type"] for p in body["messages"][-1]["content"]] == ["image_url"]
    await session.close()


async def test_a_small_text_file_is_inlined_in_its_fixed_wrapper_and_again_next_turn(fake: Fake, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Plan\n\n- ship it\n", encoding="utf-8")
    doc = att.inspect(notes, att.Limits())
    session = chat_runtime(fake).new_session()
    await turn(session, "summarise", [], doc)
    asked = chat_bodies(fake)[0]["messages"][-1]
    inline, words = texts(asked)
    assert inline == att.inline_text(doc)
    assert att.parse_inline(inline) == ("notes.md", "text/markdown", "# Plan\n\n- ship it\n")
    assert words == "summarise"

    history = browser_turn([notes], "summarise", "Echo")
    await turn(session, "more", history)
    assert texts(chat_bodies(fake)[-1]["messages"][1]) == [att.inline_text(doc), "summarise"]
    await session.close()


async def test_a_pdf_or_a_large_text_file_is_refused_on_chat_before_any_request(fake: Fake, tmp_path: Path) -> None:
    runtime = chat_runtime(fake, "attachments:\n  inline_text_kb: 1\n")
    limits = runtime.config.attachments
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(PDF)
    big = tmp_path / "big.txt"
    big.write_text("x" * 2048, encoding="utf-8")
    session = runtime.new_session()
    for path, what in ((pdf, "a PDF"), (big, "2 KiB of text")):
        value = await turn(session, "read this", [], att.inspect(path, limits))
        [line] = status_lines(value)
        assert (
            line.startswith("❌ ")
            and path.name in line
            and what in line
            and "takes no files" in line
            and "Nothing was sent" in line
        )
    assert chat_bodies(fake) == []
    # With an image beside it, the PDF still stops the whole message.
    image = tmp_path / "ok.png"
    image.write_bytes(png())
    await turn(session, "both", [], att.inspect(image, limits), att.inspect(pdf, limits))
    assert chat_bodies(fake) == []
    await session.close()


async def test_a_multimodal_turn_then_another_keeps_the_conversation_on_responses(fake: Fake, tmp_path: Path) -> None:
    """The key of the chat the page shows after a turn with files (its user message as
    ``user_content`` builds it) is the key of the history the page sends next: no reseed."""
    image = tmp_path / "cat.png"
    image.write_bytes(png())
    cat = att.inspect(image, att.Limits())
    session = Runtime(make_settings("responses", url=fake.url)).new_session()
    history: list[dict[str, Any]] = []
    for text, files in (("what is this", (cat,)), ("and now?", ()), ("", (cat,)), ("last", ())):
        answer = await turn(session, text, history, *files)
        assert isinstance(answer, str) and answer.startswith("Echo:"), answer
        history += browser_turn([image] * len(files), text, answer)
    assert len(fake.core.requests("POST", "/conversations")) == 1
    assert len(fake.core.requests("POST", "/responses")) == 4
    await session.close()


def test_the_browser_sends_a_multimodal_message_back_as_the_chat_function_builds_it() -> None:
    """Histories captured from Chromium (tests/test_attachments_browser.py) with files,
    with and without text: each reads as ``user_content`` + the answer reads, and its
    files are found with their paths."""
    captured = json.loads(FIXTURE.read_text(encoding="utf-8"))
    with_files = [h for h in captured if any(content_files(m["content"]) for m in h if m["role"] == "user")]
    assert with_files, "the fixture holds a captured history with files"
    shapes = set()
    for history in with_files:
        for i, message in enumerate(history):
            files = content_files(message["content"]) if message["role"] == "user" else []
            if not files or i + 1 >= len(history):
                continue
            words = "".join(p.get("text", "") for p in message["content"] if p.get("type") == "text")
            shapes.add(bool(words))
            found = tuple(
                att.Attachment(name=Path(path).name, mime="image/png", size=1, sha256="0", kind="image", path=Path(path))
                for _, path in files
            )
            answer = [m for m in history[i + 1 :] if m["role"] == "assistant"][:1]
            assert answered_key(history[:i], user_content(words, found), answer) == history_key(
                visible(history[: i + 1] + answer)
            )
    assert shapes == {True, False}  # a message with text and files, and files alone


# -- the page, through gradio_client -------------------------------------------------------


def chat(url: str, text: str, *paths: Path, **headers: str) -> Any:
    client = Client(url, headers=headers or None, verbose=False)
    try:
        return client.predict({"text": text, "files": [handle_file(str(p)) for p in paths]}, api_name="/chat")
    finally:
        client.close()


def test_through_gradio_client_an_image_is_sent_and_bad_files_get_one_line_and_no_request(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(png(rgb=(9, 9, 200)))
    big = tmp_path / "huge.png"
    big.write_bytes(png() + b"\0" * 4096)  # a PNG by its signature, over 0.002 MiB
    unknown = tmp_path / "tool.bin"
    unknown.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(range(256)))
    disguised = tmp_path / "photo.png"
    disguised.write_bytes(b"not an image at all")
    notes = tmp_path / "notes.txt"
    notes.write_text("line one\nline two\n", encoding="utf-8")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(PDF)
    extra = "attachments:\n  max_file_mb: 0.002\n  max_files: 2\n"
    with served(chat_runtime(fake, extra), monkeypatch) as url:
        assert chat(url, "what colour?", image) == "Echo: what colour?"
        [body] = chat_bodies(fake)
        assert image_hashes(body["messages"][-1]) == [hashlib.sha256(image.read_bytes()).hexdigest()]
        chat(url, "read it", notes)
        inline, words = texts(chat_bodies(fake)[-1]["messages"][-1])
        assert att.parse_inline(inline) == ("notes.txt", "text/plain", "line one\nline two\n") and words == "read it"
        [refused] = chat(url, "read it", pdf)
        assert "report.pdf" in refused["metadata"]["title"] and "takes no files" in refused["metadata"]["title"]
        assert len(chat_bodies(fake)) == 2

        cases = [
            ((big,), "huge.png", "over the limit of 0.002 MiB"),
            ((unknown,), "tool.bin", "not accepted"),
            ((disguised,), "photo.png", "not a valid PNG file"),
            ((image, image, image), "3 files", "over the limit of 2 per message"),
        ]
        for paths, name, why in cases:
            [message] = chat(url, "look", *paths)
            assert message["content"] == "" and message["metadata"]["title"].startswith("❌")
            assert name in message["metadata"]["title"] and why in message["metadata"]["title"]
        assert len(chat_bodies(fake)) == 2  # none of them reached the provider


def test_each_file_counts_as_one_request_more_toward_a_visitors_limit(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png())
    settings = make_settings("chat", url=fake.url, rate_limits=parse_limits("4/minute"))
    with served(Runtime(settings), monkeypatch, SPACE_ID="someone/assistant") as url:
        visitor = {"X-Forwarded-For": "203.0.113.7"}
        assert chat(url, "two files", image, image, **visitor) == "Echo: two files"  # counts 3
        assert chat(url, "plain", **visitor) == "Echo: plain"  # 4 of 4
        refused = chat(url, "one more", image, **visitor)
        assert "limit of 4 messages a minute" in json.dumps(refused, ensure_ascii=False)
        assert [len(b["messages"]) for b in chat_bodies(fake)] == [2, 2]


def test_the_guard_counts_a_costly_message_whole() -> None:
    now = [1000.0]
    guard = Guard((Limit(3, 60.0),), daily=10, clock=lambda: now[0])
    assert guard.admit("ip:a", cost=2) is None
    refusal = guard.admit("ip:a", cost=2)  # 2 + 2 > 3
    assert refusal is not None and refusal.retry_after == 60.0
    assert guard.admit("ip:a") is None  # 3 of 3
    now[0] += 61
    too_many = guard.admit("ip:a", cost=4)
    assert too_many is not None and too_many.retry_after == 0 and "send fewer files" in too_many.message
    assert guard.admit("ip:a", cost=3) is None
    now[0] += 61
    assert guard.admit("ip:b", cost=5) is not None  # over the limit at all: refused, counts nothing
    daily = Guard((), daily=3, clock=lambda: now[0])
    assert daily.admit("ip:a", cost=2) is None
    assert daily.admit("ip:a", cost=2) is not None and daily.admit("ip:a") is None


# -- the terminal chat's /file --------------------------------------------------------------


def test_the_terminal_chats_file_command_attaches_to_the_next_message(fake: Fake, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(png(rgb=(77, 66, 55)))
    child = pexpect.spawn(
        sys.executable,
        ["app.py", "--cli"],
        cwd=str(ROOT),
        env=app_env({"OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": fake.url, "STREAMCHAT_BACKEND": "chat"}),
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 300),
    )
    try:
        child.expect_exact("/file PATH")
        child.expect_exact("> ")
        child.sendline(f"/file {tmp_path / 'missing.png'}")
        child.expect_exact("❌ missing.png: could not be read (no such file).")
        child.sendline(f"/file {image}")
        child.expect_exact("📎 cat.png (image, image/png")
        child.expect_exact("Your next message sends: cat.png.")
        child.expect_exact("> ")
        assert chat_bodies(fake) == []  # attaching sends nothing
        child.sendline("what is this")
        child.expect_exact("Echo: what is this")
        child.expect_exact("> ")
        child.sendline("and this?")  # the file went with the message before: not again as new
        child.expect_exact("Echo: and this?")
        child.sendline("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    first, second = chat_bodies(fake)
    assert image_hashes(first["messages"][-1]) == [hashlib.sha256(image.read_bytes()).hexdigest()]
    assert second["messages"][-1] == {"role": "user", "content": "and this?"}
    assert image_hashes(second["messages"][1]) == image_hashes(first["messages"][-1])  # in the history, sent again


# -- files tools produce --------------------------------------------------------------------


def test_a_tool_made_file_shows_below_its_bubble_and_gradio_takes_the_value(tmp_path: Path) -> None:
    plot = tmp_path / "plot.png"
    plot.write_bytes(png())
    table = tmp_path / "data.csv"
    table.write_text("a,b\n1,2\n", encoding="utf-8")
    transcript = Transcript()
    for event in [
        ev.StreamEvent("tool_call", call_id="ci_1", name="code_interpreter", extra={"server": True}),
        ev.StreamEvent("tool_args", "plot()", call_id="ci_1"),
        ev.StreamEvent("tool_done", call_id="ci_1", name="code_interpreter", extra={"server": True}),
        ev.StreamEvent("file", "plot.png", url=str(plot), extra={"mime": "image/png"}),
        ev.StreamEvent("file", "data.csv", url=str(table), extra={"mime": "text/csv"}),
        ev.text("Here is the plot."),
        ev.turn_end("completed"),
    ]:
        transcript.handle_event(event)
    shown = transcript.snapshot()
    assert [m.get("metadata", {}).get("title") for m in shown] == ["🐍 Ran code", None, None, None]
    assert shown[1]["content"] == {"type": "file", "file": {"path": str(plot), "orig_name": "plot.png", "mime_type": "image/png"}}
    assert shown[2]["content"]["file"]["path"] == str(table)
    assert shown[3]["content"] == "Here is the plot."

    # Gradio 6's chatbot takes the value: an image file message and a file to download.
    chatbot = gr.Chatbot()
    out = chatbot.postprocess([{"role": "user", "content": "plot it"}, *shown]).model_dump()
    files = [part["file"] for m in out for part in m["content"] if part["type"] == "file"]
    assert [(f["orig_name"], f["mime_type"]) for f in files] == [("plot.png", "image/png"), ("data.csv", "text/csv")]
    assert "[file: plot.png]" in visible(shown)[0]["content"]  # what the model is told was shown


async def test_a_sessions_output_folder_is_its_own_and_goes_with_it(fake: Fake) -> None:
    runtime = chat_runtime(fake)
    one, two = runtime.new_session(), runtime.new_session()
    await turn(one, "hi", [])
    await turn(two, "hi", [])
    first, second = one.outputs, two.outputs
    assert first is not None and second is not None and first != second
    assert first.is_dir() and (first.stat().st_mode & 0o777) == 0o700  # this process's user only
    await one.reset()
    assert not first.exists() and second.is_dir()
    await two.close()
    assert not second.exists()


def test_the_terminal_chat_says_where_a_tool_made_file_was_saved(tmp_path: Path) -> None:
    import io

    from streamchat.cli import _Printer

    transcript = Transcript()
    transcript.handle_event(ev.text("Plotted:"))
    transcript.handle_event(ev.StreamEvent("file", "plot.png", url=str(tmp_path / "plot.png"), extra={"mime": "image/png"}))
    transcript.handle_event(ev.text("Done."))
    transcript.handle_event(ev.turn_end("completed"))
    out = io.StringIO()
    _Printer(out).update(transcript.snapshot(), final=True)
    assert out.getvalue() == f"Plotted:\n[file: plot.png saved at {tmp_path / 'plot.png'}]\nDone."
