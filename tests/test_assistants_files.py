"""Files and images on the Assistants backend, over real HTTP against the fake server:
what the model sees of each attachment (the fake names it by the SHA-256 of its bytes),
the session's vector store and uploads and their deletion, the refusal when no tool can
take a document, files the code interpreter makes, and the thread kept in line with the
chat through Undo and Edit when messages carried files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import BASE_CONFIG, TEST_KEY, Fake, make_settings
from images import attach, png, sha

from streamchat.attachments import Attachment
from streamchat.backends.assistants import AssistantsBackend
from streamchat.backends.base import Conversation, NullTap, TurnContext
from streamchat.backends.history import content_text, visible
from streamchat.replayapi import Reply, Script, TurnRequest
from streamchat.session import ChatSession, Runtime, user_content
from streamchat.testing import synth

CONFIG = BASE_CONFIG.replace("backend: responses", "backend: assistants")
FILE_SEARCH = CONFIG + "tools:\n  - type: file_search\n"
CODE = CONFIG + "tools:\n  - type: code_interpreter\n"
BOTH = CONFIG + "tools:\n  - type: file_search\n  - type: code_interpreter\n"


def runtime(fake: Fake, config: str = CONFIG) -> Runtime:
    return Runtime(make_settings("assistants", url=fake.url, config=config))


def users(fake: Fake) -> list[str]:
    return [text for role, text in fake.core.contexts[-1] if role == "user"]


def uploads(fake: Fake) -> list[Any]:
    return [r for r in fake.core.requests("POST") if r.path == "/files"]


def run_stores(fake: Fake) -> dict[str, list[str]] | None:
    return fake.core.requests("POST", "/runs")[-1].stores


class Page:
    """The chat as ChatInterface keeps it: each user message with its files as the
    session shows them (``user_content``), then the answer as the turn yielded it."""

    def __init__(self, session: ChatSession) -> None:
        self.session = session
        self.history: list[dict[str, Any]] = []

    async def send(self, text: str, *files: Attachment) -> str:
        values = [v async for v in self.session.turn(text, list(self.history), attachments=files)]
        final = values[-1]
        answer = final if isinstance(final, list) else [{"role": "assistant", "content": final}]
        self.history += [{"role": "user", "content": user_content(text, files)}, *answer]
        return content_text(visible(answer)[-1]["content"]) if visible(answer) else ""

    def undo(self) -> None:
        i = len(self.history) - 1
        while i >= 0 and self.history[i]["role"] == "assistant":
            i -= 1
        while i >= 0 and self.history[i]["role"] == "user":
            i -= 1
        self.history = self.history[: i + 1]


@pytest.fixture
def seen_by_model(fake: Fake) -> Fake:
    """The fake model answers with the user messages and files it saw."""

    def answer(req: TurnRequest) -> Script:
        seen = " | ".join(f"{role}:{text[:8] if role in ('image', 'file') else text}" for role, text in req.context)
        return Script(events=synth.timed(synth.assistants_stream([f"Seen {seen}"]), step=0))

    fake.responder = answer
    return fake


# -- images ------------------------------------------------------------------------------------


async def test_an_image_reaches_the_model_as_an_image_file_uploaded_once(fake: Fake, tmp_path: Path) -> None:
    red = attach(tmp_path, "red.png", png())
    page = Page(ChatSession(runtime(fake)))
    await page.send("What colour is this?", red)
    assert fake.core.contexts[-1] == [("user", "What colour is this?"), ("image", red.sha256)]
    (uploaded,) = fake.core.files.files.values()
    assert (uploaded.purpose, uploaded.filename, uploaded.sha256) == ("vision", "red.png", red.sha256)
    body = fake.core.requests("POST", "/messages")[-1].body
    assert body["content"][1] == {"type": "image_file", "image_file": {"file_id": uploaded.id}}

    await page.send("And this one, again?", red)  # the same bytes: the same upload
    assert len(fake.core.files.files) == 1
    assert fake.core.contexts[-1][-2:] == [("user", "And this one, again?"), ("image", red.sha256)]
    assert [r for r, _ in fake.core.contexts[-1]] == ["user", "image", "assistant", "user", "image"]


async def test_an_image_without_words_is_sent_as_the_image_alone(fake: Fake, tmp_path: Path) -> None:
    blue = attach(tmp_path, "blue.png", png(rgb=(0, 0, 255)))
    await Page(ChatSession(runtime(fake))).send("", blue)
    assert fake.core.requests("POST", "/messages")[-1].body["content"][0]["type"] == "image_file"
    assert fake.core.contexts[-1] == [("user", ""), ("image", blue.sha256)]


# -- documents ---------------------------------------------------------------------------------


async def test_documents_go_to_one_vector_store_of_the_session_and_close_deletes_everything(fake: Fake, tmp_path: Path) -> None:
    notes = attach(tmp_path, "notes.md", b"# Launch\nThe code is 4242.\n")
    faq = attach(tmp_path, "faq.txt", b"Refunds take 14 days.\n")
    session = ChatSession(runtime(fake, FILE_SEARCH))
    page = Page(session)
    await page.send("What is the code?", notes)
    (store,) = fake.core.live_objects("vector_store")
    assert run_stores(fake) == {store: [notes.sha256]}  # what file_search can search in this run
    (thread,) = fake.core.live_objects("thread")
    assert fake.core.objects[thread]["tool_resources"] == {"file_search": {"vector_store_ids": [store]}}
    assert {f.purpose for f in fake.core.files.files.values()} == {"assistants"}

    await page.send("And refunds?", faq)  # the same store, one document more
    assert fake.core.live_objects("vector_store") == [store]
    assert run_stores(fake) == {store: [notes.sha256, faq.sha256]}
    assert len(fake.core.requests("POST", "/vector_stores")) == 1 + 2  # one store, two files added

    await session.close()  # what closing the tab calls
    assert fake.core.live_objects("vector_store") == []
    assert fake.core.live_objects("thread") == []
    assert fake.core.files.files == {}
    assert session.conv.vector_store_id is None and session.conv.uploads == {}


async def test_configured_stores_of_the_assistant_are_searched_with_the_sessions(fake: Fake, tmp_path: Path) -> None:
    handbook = attach(tmp_path, "handbook.txt", b"Vacation: 25 days.\n")
    client = openai.OpenAI(api_key=TEST_KEY, base_url=fake.url, max_retries=0)
    kept = client.files.create(file=("old.txt", b"Old policy.\n", "text/plain"), purpose="assistants")
    configured = client.vector_stores.create(file_ids=[kept.id]).id
    config = CONFIG + f"tools:\n  - type: file_search\n    vector_store_ids: [{configured}]\n"
    session = ChatSession(runtime(fake, config))
    await Page(session).send("How many vacation days?", handbook)
    assert run_stores(fake) == {session.conv.vector_store_id: [handbook.sha256], configured: [sha(b"Old policy.\n")]}
    await session.close()
    assert fake.core.live_objects("vector_store") == [configured]  # not the session's to delete
    assert list(fake.core.files.files) == [kept.id]


async def test_a_document_the_store_cannot_index_is_said_and_tried_again_next_time(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = attach(tmp_path, "scan.pdf", b"%PDF-1.4 only an image inside\n")
    handle = fake.core.handle
    failing = True

    async def indexing(method: str, path: str, body: Any, headers: dict[str, str]) -> Reply:
        reply = await handle(method, path, body, headers)
        if failing and "vector_stores/" in path and "/files" in path:  # the file added, then polled
            reply.body = {**reply.body, "status": "failed", "last_error": {"code": "unsupported_file", "message": "no text"}}
        return reply

    monkeypatch.setattr(fake.core, "handle", indexing)
    session = ChatSession(runtime(fake, FILE_SEARCH))
    page = Page(session)
    values = [v async for v in session.turn("Summarise", [], attachments=(scan,))]
    shown = str(values[-1])
    assert "scan.pdf: the vector store could not index it (no text); file_search will not find it." in shown
    assert fake.core.contexts[-1] == [("user", "Summarise")]  # the run went on, without it
    failing = False
    page.history = [{"role": "user", "content": user_content("Summarise", (scan,))}, {"role": "assistant", "content": "?"}]
    await page.send("Try again", scan)
    assert run_stores(fake) == {session.conv.vector_store_id: [scan.sha256]}
    assert len(uploads(fake)) == 1  # uploaded once, indexed on the second try


async def test_a_document_goes_to_the_code_interpreter_as_a_message_attachment(fake: Fake, tmp_path: Path) -> None:
    table = attach(tmp_path, "data.csv", b"id,value\n1,2\n3,4\n")
    session = ChatSession(runtime(fake, CODE))
    await Page(session).send("Sum the values", table)
    assert fake.core.contexts[-1] == [("user", "Sum the values"), ("file", table.sha256)]
    (file_id,) = session.conv.uploads.values()
    body = fake.core.requests("POST", "/messages")[-1].body
    assert body["attachments"] == [{"file_id": file_id, "tools": [{"type": "code_interpreter"}]}]
    assert fake.core.live_objects("vector_store") == []  # no file_search: no store
    await session.close()
    assert fake.core.files.files == {}


async def test_with_both_tools_a_csv_goes_only_to_the_code_interpreter(fake: Fake, tmp_path: Path) -> None:
    table = attach(tmp_path, "data.csv", b"id,value\n1,2\n")
    notes = attach(tmp_path, "notes.md", b"# Notes\n")
    session = ChatSession(runtime(fake, BOTH))
    await Page(session).send("Look", table, notes)
    assert run_stores(fake) == {session.conv.vector_store_id: [notes.sha256]}  # file_search reads no CSV
    attached = fake.core.requests("POST", "/messages")[-1].body["attachments"]
    assert [a["file_id"] for a in attached] == [session.conv.uploads[table.sha256], session.conv.uploads[notes.sha256]]


@pytest.mark.parametrize(
    ("config", "name", "data", "says"),
    [
        (CONFIG, "notes.md", b"# Notes\n", "documents need the file_search or code_interpreter tool"),
        (FILE_SEARCH, "data.csv", b"a,b\n1,2\n", "file_search cannot read text/csv files; add the code_interpreter tool"),
    ],
)
async def test_a_document_no_tool_can_take_is_refused_before_any_request(
    fake: Fake, tmp_path: Path, config: str, name: str, data: bytes, says: str
) -> None:
    doc = attach(tmp_path, name, data)
    backend = AssistantsBackend(runtime(fake, config).client, runtime(fake, config).config)
    line = backend.refuse((doc,))
    assert line is not None and line.startswith(f"{name}: ") and says in line and line.count("\n") == 0
    assert backend.refuse((attach(tmp_path, "ok.png", png()),)) is None  # images always go
    events = [e async for e in backend.turn(Conversation(), "Read it", [], TurnContext(attachments=(doc,)))]
    assert [(e.kind, e.status, e.text) for e in events] == [("turn_end", "failed", line)]
    assert fake.core.requests() == []  # not even the assistant was created


# -- files the code interpreter makes ----------------------------------------------------------


PLOT = png(3, 2, (0, 128, 0))
CSV = b"x,y\n1,1\n2,4\n"


def plotting_run() -> Script:
    """A code interpreter run that makes a plot (a step output and an ``image_file`` part
    of the answer, in its deltas and again in the completed message) and a CSV (a
    ``file_path`` annotation), as the Assistants API streams them."""
    ci = synth.CodeInterpreterCall("plot()", logs="done\n", images=["file-plot1"])
    text = "Saved [the data](sandbox:/mnt/data/squares.csv)."
    note = {"type": "file_path", "text": "sandbox:/mnt/data/squares.csv", "file_path": {"file_id": "file-csv1"}}
    raws = synth.assistants_stream([text[:10], text[10:]], builtins=[ci], annotations=[note])
    image = {"type": "image_file", "image_file": {"file_id": "file-plot1"}}
    for raw in raws:  # the image is the message's first part, its text the second
        if raw.event == "thread.message.delta":
            raw.data["delta"]["content"][0]["index"] = 1
            if raw.data["delta"]["content"][0]["text"]["value"] == text[:10]:
                raw.data["delta"]["content"].insert(0, {"index": 0, **image})
        if raw.event == "thread.message.completed":
            raw.data["content"].insert(0, image)
    return Script(events=synth.timed(raws, step=0), files={"file-plot1": ("plot.png", PLOT), "file-csv1": ("squares.csv", CSV)})


class Tap(NullTap):
    def __init__(self) -> None:
        self.files: list[tuple[str, str, bytes]] = []

    def output_file(self, file_id: str, name: str, data: bytes) -> None:
        self.files.append((file_id, name, data))


async def test_files_the_code_interpreter_makes_are_downloaded_once_and_shown(fake: Fake, tmp_path: Path) -> None:
    fake.push(plotting_run())
    rt = runtime(fake, CODE)
    backend = AssistantsBackend(rt.client, rt.config)
    tap, outputs = Tap(), tmp_path / "outputs"
    events = [e async for e in backend.turn(Conversation(), "Plot squares", [], TurnContext(tap=tap, outputs=outputs))]
    files = [e for e in events if e.kind == "file"]
    assert [(e.text, e.extra["mime"]) for e in files] == [("plot.png", "image/png"), ("squares.csv", "text/csv")]
    assert [Path(str(e.url)).read_bytes() for e in files] == [PLOT, CSV]
    assert all(Path(str(e.url)).is_relative_to(outputs) for e in files)
    assert [f[0] for f in tap.files] == ["file-plot1", "file-csv1"] and tap.files[0][2] == PLOT  # recorded
    downloads = [r.path for r in fake.core.requests("GET", "/content")]
    assert sorted(downloads) == sorted({*downloads}) and len(downloads) == 2  # each once
    assert events[-1].status == "completed"
    assert "".join(e.text for e in events if e.kind == "text") == "Saved [the data](sandbox:/mnt/data/squares.csv)."


async def test_without_an_outputs_folder_nothing_is_downloaded(fake: Fake) -> None:
    fake.push(plotting_run())
    rt = runtime(fake, CODE)
    events = [e async for e in AssistantsBackend(rt.client, rt.config).turn(Conversation(), "Plot", [], TurnContext())]
    assert [(e.extra["file_id"], e.url) for e in events if e.kind == "file"] == [("file-plot1", None), ("file-csv1", None)]
    assert fake.core.requests("GET", "/content") == []


async def test_a_file_that_cannot_be_downloaded_is_one_notice(fake: Fake, tmp_path: Path) -> None:
    script = plotting_run()
    script.files.pop("file-csv1")
    fake.push(script)
    rt = runtime(fake, CODE)
    events = [
        e async for e in AssistantsBackend(rt.client, rt.config).turn(Conversation(), "Plot", [], TurnContext(outputs=tmp_path))
    ]
    assert [e.text for e in events if e.kind == "file"] == ["plot.png"]
    (notice,) = [e for e in events if e.kind == "notice"]
    assert notice.text == "Could not download squares.csv: the server answered 404."
    assert events[-1].status == "completed"


# -- the thread follows the chat ---------------------------------------------------------------


async def test_undo_after_an_image_turn_keeps_the_image_and_drops_what_was_undone(seen_by_model: Fake, tmp_path: Path) -> None:
    fake = seen_by_model
    red, blue = attach(tmp_path, "red.png", png()), attach(tmp_path, "blue.png", png(rgb=(0, 0, 255)))
    session = ChatSession(runtime(fake))
    page = Page(session)
    await page.send("What is this?", red)
    thread = session.conv.thread_id
    await page.send("And this?", blue)
    page.undo()  # the blue image's turn goes
    await page.send("Describe the first one again")
    assert session.conv.thread_id == thread  # known history: the same thread, trimmed
    roles = fake.core.contexts[-1]
    assert [r for r, _ in roles] == ["user", "image", "assistant", "user"]
    assert roles[1] == ("image", red.sha256) and ("image", blue.sha256) not in roles
    assert users(fake) == ["What is this?", "Describe the first one again"]

    page.undo()
    page.undo()  # back to the empty chat: the red image's turn goes too
    await page.send("Hello")
    assert fake.core.contexts[-1] == [("user", "Hello")]
    await session.close()
    assert fake.core.files.files == {} and fake.core.live_objects("thread") == []


async def test_undoing_a_document_turn_takes_the_document_out_of_the_store(seen_by_model: Fake, tmp_path: Path) -> None:
    fake = seen_by_model
    notes = attach(tmp_path, "notes.md", b"# Launch\nThe code is 4242.\n")
    faq = attach(tmp_path, "faq.txt", b"Refunds take 14 days.\n")
    session = ChatSession(runtime(fake, FILE_SEARCH))
    page = Page(session)
    await page.send("Code?", notes)
    await page.send("Refunds?", faq)
    store = session.conv.vector_store_id
    page.undo()
    await page.send("Anything else?")
    assert run_stores(fake) == {store: [notes.sha256]}  # the undone turn's document is not searched
    await page.send("Refunds, again", faq)  # sent again: back in the store, not uploaded again
    assert run_stores(fake) == {store: [notes.sha256, faq.sha256]}
    assert len(uploads(fake)) == 2


async def test_an_edited_history_seeds_a_new_thread_with_its_images_and_the_sessions_store(
    seen_by_model: Fake, tmp_path: Path
) -> None:
    fake = seen_by_model
    red = attach(tmp_path, "red.png", png())
    notes = attach(tmp_path, "notes.md", b"# Launch\nThe code is 4242.\n")
    session = ChatSession(runtime(fake, FILE_SEARCH))
    page = Page(session)
    await page.send("What is this?", red)
    await page.send("Read this", notes)
    old, store = session.conv.thread_id, session.conv.vector_store_id
    page.history[1] = {"role": "assistant", "content": "A red square (edited)."}  # an answer edited: unknown history
    await page.send("Go on")
    assert session.conv.thread_id != old and fake.core.live_objects("thread") == [session.conv.thread_id]
    context = fake.core.contexts[-1]
    assert context[:3] == [("user", "What is this?"), ("image", red.sha256), ("assistant", "A red square (edited).")]
    assert context[3][0] == "user" and context[3][1] == "Read this" and context[-1] == ("user", "Go on")
    assert run_stores(fake) == {store: [notes.sha256]}  # the new thread searches the session's store
    assert len(uploads(fake)) == 2  # nothing uploaded twice


async def test_a_reopened_chat_whose_files_are_gone_keeps_their_labels(seen_by_model: Fake, tmp_path: Path) -> None:
    fake = seen_by_model
    red = attach(tmp_path, "red.png", png())
    history = [
        {"role": "user", "content": user_content("What is this?", (red,))},
        {"role": "assistant", "content": "A red square."},
    ]
    assert red.path is not None
    red.path.unlink()  # Gradio's cache was cleared since
    session = ChatSession(runtime(fake))
    [v async for v in session.turn("Thanks", history)]
    assert fake.core.contexts[-1] == [
        ("user", "[file: red.png]\n\nWhat is this?"),
        ("assistant", "A red square."),
        ("user", "Thanks"),
    ]
    assert fake.core.files.files == {}


async def test_a_saved_chat_reopened_sends_its_files_again_in_the_browsers_shape(seen_by_model: Fake, tmp_path: Path) -> None:
    """The page sends a file back as a message of its own, ``orig_name`` null, the path
    in Gradio's cache ending in the file's name; no session state is behind it."""
    fake = seen_by_model
    red = attach(tmp_path, "red.png", png())
    notes = attach(tmp_path, "notes.md", b"# Launch\nThe code is 4242.\n")
    history: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "file", "file": {"path": str(red.path), "orig_name": None}}]},
        {"role": "user", "content": [{"type": "file", "file": {"path": str(notes.path), "orig_name": None}}]},
        {"role": "user", "content": [{"type": "text", "text": "What are these?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A red square and launch notes."}]},
    ]
    session = ChatSession(runtime(fake, FILE_SEARCH))
    [v async for v in session.turn("What is the code?", history)]
    assert fake.core.contexts[-1] == [
        ("user", ""),
        ("image", red.sha256),
        ("user", "[file: notes.md]"),  # a document alone: its label is the message's text
        ("user", "What are these?"),
        ("assistant", "A red square and launch notes."),
        ("user", "What is the code?"),
    ]
    assert run_stores(fake) == {session.conv.vector_store_id: [notes.sha256]}
    assert sorted(f.filename for f in fake.core.files.files.values()) == ["notes.md", "red.png"]


async def test_end_session_goes_on_past_a_failure(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    red = attach(tmp_path, "red.png", png())
    notes = attach(tmp_path, "notes.md", b"# Notes\n")
    session = ChatSession(runtime(fake, FILE_SEARCH))
    await Page(session).send("Both", red, notes)
    conv = session.conv
    thread, first = conv.thread_id, next(iter(conv.uploads.values()))
    del fake.core.files.files[first]  # already gone: a 404, nothing to say
    handle = fake.core.handle

    async def failing(method: str, path: str, body: Any, headers: dict[str, str]) -> Reply:
        if method == "DELETE" and f"threads/{thread}" in path:
            return Reply(500, {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}})
        return await handle(method, path, body, headers)

    monkeypatch.setattr(fake.core, "handle", failing)
    await session.close()  # nothing raised
    assert fake.core.live_objects("vector_store") == []
    assert fake.core.files.files == {}
    assert fake.core.live_objects("thread") == [thread]  # the one that failed
    (line,) = [r.getMessage() for r in caplog.records if "could not delete" in r.getMessage()]
    assert line.startswith(f"could not delete thread {thread}: ") and "500" in line
