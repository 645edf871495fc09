"""Files on the Responses backend, over real HTTP against the fake server: images reach
the model as ``input_image``, documents go to the session's own vector store (with
file_search) or as ``input_file``, the code interpreter gets them as container files
and the files it makes are downloaded; the session's store and uploads are deleted with
it. What is asserted is first what the fake server saw and kept (its model context, its
vector stores, its files); the request body only where its form is the point (a data
URL or a file id, the tools' store and container ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import BASE_CONFIG, TEST_KEY, Fake, make_settings, replay_settings
from images import attach, png, sha

from streamchat.attachments import Attachment
from streamchat.backends import responses
from streamchat.backends.base import Conversation, NullTap, TurnContext
from streamchat.backends.history import content_text, visible
from streamchat.backends.responses import ResponsesAdapter, ResponsesBackend, _safe_part, visible_with_files
from streamchat.config import parse_config
from streamchat.events import StreamEvent
from streamchat.replayapi import Reply, Script
from streamchat.session import ChatSession, Runtime, user_content
from streamchat.sse import RawEvent
from streamchat.testing import synth

SEARCH_CONFIG = BASE_CONFIG + "tools:\n  - type: file_search\n"
CODE_CONFIG = BASE_CONFIG + "tools:\n  - type: code_interpreter\n"


def browser_message(role: str, content: Any) -> dict[str, Any]:
    """A message as Gradio's browser sends it back: content as a list of parts."""
    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
    return {"role": role, "metadata": None, "content": parts, "options": None}


class Page:
    """The chat as ChatInterface keeps it: the user's files shown in their message."""

    def __init__(self, session: ChatSession) -> None:
        self.session = session
        self.history: list[dict[str, Any]] = []

    async def send(self, text: str, files: tuple[Attachment, ...] = ()) -> str:
        values = [v async for v in self.session.turn(text, list(self.history), attachments=files)]
        final = values[-1]
        answer = final if isinstance(final, list) else [{"role": "assistant", "content": final}]
        self.history += [browser_message("user", user_content(text, files))]
        self.history += [browser_message(m["role"], m["content"]) for m in answer if not m.get("metadata")]
        shown = visible(answer)
        return content_text(shown[-1]["content"]) if shown else ""

    def undo(self) -> None:
        while self.history and self.history[-1]["role"] == "assistant":
            self.history.pop()
        while self.history and self.history[-1]["role"] == "user":
            self.history.pop()


def runtime(fake: Fake, config: str = BASE_CONFIG) -> Runtime:
    return Runtime(make_settings("responses", url=fake.url, config=config))


def stream_requests(fake: Fake) -> list[Any]:
    return fake.core.requests("POST", "/responses")


# -- images -----------------------------------------------------------------------------


async def test_an_image_reaches_the_model_as_input_image(fake: Fake, tmp_path: Path) -> None:
    rt = runtime(fake)
    page = Page(rt.new_session())
    red = attach(tmp_path, "red.png", png())
    assert await page.send("What colour is this?", (red,)) == "Echo: What colour is this?"
    assert fake.core.contexts[-1] == [("user", "What colour is this?"), ("image", sha(png()))]
    part = stream_requests(fake)[-1].body["input"][-1]["content"][1]
    assert part["type"] == "input_image" and part["image_url"].startswith("data:image/png;base64,")
    assert fake.core.files.files == {}  # a data URL: nothing uploaded, nothing to delete
    await page.session.close()
    await rt.shutdown()


async def test_a_large_image_is_uploaded_and_deleted_with_the_session(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over ``IMAGE_INLINE_MAX`` an image goes by file id (purpose vision), uploaded once;
    the code interpreter's container gets documents, not such images."""
    small, large = png(), png(64, 64, (0, 0, 255))
    monkeypatch.setattr(responses, "IMAGE_INLINE_MAX", len(small))
    rt = runtime(fake, CODE_CONFIG)
    session = rt.new_session()
    page = Page(session)
    big, csv = attach(tmp_path, "big.png", large), attach(tmp_path, "data.csv", b"x\n1\n")
    await page.send("Compare", (attach(tmp_path, "small.png", small), big, csv))
    assert fake.core.contexts[-1] == [("user", "Compare"), ("image", sha(small)), ("image", sha(large)), ("file", csv.sha256)]
    body = stream_requests(fake)[-1].body
    image_id, csv_id = session.conv.uploads[big.sha256], session.conv.uploads[csv.sha256]
    assert body["input"][-1]["content"][2] == {"type": "input_image", "file_id": image_id}
    assert fake.core.files.files[image_id].purpose == "vision"
    assert body["tools"][0]["container"]["file_ids"] == [csv_id]
    await page.send("Again", (big,))
    assert len([r for r in fake.core.requests("POST") if r.path == "/files"]) == 2  # not uploaded twice
    await session.close()
    assert fake.core.files.files == {}
    await rt.shutdown()


async def test_an_image_alone_is_a_message(fake: Fake, tmp_path: Path) -> None:
    rt = runtime(fake)
    page = Page(rt.new_session())
    await page.send("", (attach(tmp_path, "red.png", png()),))
    assert fake.core.contexts[-1] == [("user", ""), ("image", sha(png()))]
    await page.session.close()
    await rt.shutdown()


async def test_a_file_gone_before_it_is_sent_ends_the_turn_with_one_line(fake: Fake, tmp_path: Path) -> None:
    rt = runtime(fake)
    session = rt.new_session()
    red = attach(tmp_path, "red.png", png())
    (tmp_path / "red.png").unlink()  # checked, then removed from the upload cache
    values = [v async for v in session.turn("What is this?", [], attachments=(red,))]
    assert session.last_status == "failed"
    assert "red.png: could not be read" in str(values[-1])
    assert stream_requests(fake) == []
    await session.close()
    await rt.shutdown()


async def test_images_stay_right_through_undo_retry_and_a_reseed(fake: Fake, tmp_path: Path) -> None:
    """Undo and Retry after image turns keep the conversation (items deleted after the
    mark: the undone image goes with its message); an unknown history (an edited
    answer) is reseeded with the session's own images still in it."""
    rt = runtime(fake)
    session = rt.new_session()
    page = Page(session)
    red, blue = attach(tmp_path, "red.png", png()), attach(tmp_path, "blue.png", png(rgb=(0, 0, 255)))
    await page.send("What is this?", (red,))
    await page.send("And this?", (blue,))
    first_answer = ("assistant", "Echo: What is this?")
    assert fake.core.contexts[-1] == [
        ("user", "What is this?"),
        ("image", red.sha256),
        first_answer,
        ("user", "And this?"),
        ("image", blue.sha256),
    ]
    conversation = session.conv.conversation_id
    page.undo()
    await page.send("Something else")
    assert fake.core.contexts[-1] == [("user", "What is this?"), ("image", red.sha256), first_answer, ("user", "Something else")]
    page.undo()  # Retry of the image turn: the same message and file again
    await page.send("And this?", (blue,))
    assert fake.core.contexts[-1][-2:] == [("user", "And this?"), ("image", blue.sha256)]
    assert [role for role, _ in fake.core.contexts[-1]] == ["user", "image", "assistant", "user", "image"]
    assert session.conv.conversation_id == conversation  # realigned in place, not reseeded

    # The first answer edited on the page: a history the server never saw.
    page.history[1] = browser_message("assistant", "A red square.")
    page.history = page.history[:2]
    await page.send("Thanks")
    assert session.conv.conversation_id != conversation
    assert fake.core.contexts[-1] == [
        ("user", "[file: red.png]\n\nWhat is this?"),  # the page's own label, and the image itself
        ("image", red.sha256),
        ("assistant", "A red square."),
        ("user", "Thanks"),
    ]
    await session.close()
    assert fake.core.live_objects("conversation") == []
    await rt.shutdown()


async def test_images_on_a_server_that_only_chains_responses(fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the Conversations API the chain keeps the image; an unknown history is
    sent as input items with the session's images in them."""
    monkeypatch.setattr(fake.core, "conversations_api", False)
    rt = runtime(fake)
    session = rt.new_session()
    page = Page(session)
    red = attach(tmp_path, "red.png", png())
    await page.send("What is this?", (red,))
    await page.send("Sure?")
    assert session.conv.chain_only and "previous_response_id" in stream_requests(fake)[-1].body
    assert fake.core.contexts[-1][:2] == [("user", "What is this?"), ("image", red.sha256)]
    page.history[1] = browser_message("assistant", "A red square.")
    page.history = page.history[:2]
    await page.send("Thanks")
    assert "previous_response_id" not in stream_requests(fake)[-1].body
    assert fake.core.contexts[-1] == [
        ("user", "[file: red.png]\n\nWhat is this?"),
        ("image", red.sha256),
        ("assistant", "A red square."),
        ("user", "Thanks"),
    ]
    await session.close()
    await rt.shutdown()


async def test_a_reseed_reads_no_file_the_session_was_not_given(fake: Fake, tmp_path: Path) -> None:
    """A path in the history the browser sends is not trusted: only files attached in
    this session are read again."""
    secret = tmp_path / "other.png"
    secret.write_bytes(png(rgb=(1, 2, 3)))
    rt = runtime(fake)
    page = Page(rt.new_session())
    page.history = [
        browser_message("user", [{"type": "file", "file": {"path": str(secret), "orig_name": "other.png"}}]),
        browser_message("assistant", "Seen."),
    ]
    await page.send("Again?")
    assert fake.core.contexts[-1] == [("user", "[file: other.png]"), ("assistant", "Seen."), ("user", "Again?")]
    await page.session.close()
    await rt.shutdown()


async def test_a_reseed_finds_the_sessions_file_under_another_path(fake: Fake, tmp_path: Path) -> None:
    """Gradio may send back a copy of an upload from its cache: the same bytes are the
    same file, wherever they are."""
    rt = runtime(fake)
    page = Page(rt.new_session())
    red = attach(tmp_path, "red.png", png())
    await page.send("What is this?", (red,))
    copy = tmp_path / "cache" / "red.png"
    copy.parent.mkdir()
    copy.write_bytes(png())
    page.history[0]["content"][0]["file"]["path"] = str(copy)
    page.history[1] = browser_message("assistant", "A red square.")
    await page.send("Thanks")
    assert fake.core.contexts[-1][:2] == [("user", "[file: red.png]\n\nWhat is this?"), ("image", red.sha256)]
    await page.session.close()
    await rt.shutdown()


def test_visible_with_files_pairs_each_visible_message_with_its_files() -> None:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "file", "file": {"path": "/up/a.png", "orig_name": "a.png"}}]},
        {"role": "user", "content": ("/up/b.pdf",)},
        {"role": "user", "content": [{"path": "/up/c.md"}, {"type": "text", "text": "read"}]},
        {"role": "assistant", "content": "one"},
        {"role": "assistant", "metadata": {"title": "tool"}, "content": "bubble"},
        {"role": "assistant", "content": "two"},
    ]
    paired = visible_with_files(history)
    assert [m for m, _ in paired] == visible(history)
    assert [files for _, files in paired] == [[("/up/a.png", "a.png")], [("/up/b.pdf", "b.pdf")], [("/up/c.md", "c.md")], []]


# -- documents ---------------------------------------------------------------------------


async def test_documents_go_to_the_sessions_vector_store_and_leave_with_it(fake: Fake, tmp_path: Path) -> None:
    rt = runtime(fake, SEARCH_CONFIG)
    session = rt.new_session()
    page = Page(session)
    await page.send("Hello")
    assert "tools" not in stream_requests(fake)[-1].body  # no store to search yet
    notes = attach(tmp_path, "notes.txt", b"The launch code is 4242.\n")
    await page.send("What is the code?", (notes,))
    (store,) = fake.core.live_objects("vector_store")
    assert session.conv.vector_store_id == store
    assert stream_requests(fake)[-1].stores == {store: [notes.sha256]}
    # Searched, not pasted in: the model's context names no file of its own.
    assert fake.core.contexts[-1][-1] == ("user", "What is the code?")

    report = attach(tmp_path, "report.pdf", b"%PDF-1.4 a tiny report\n")
    await page.send("And the report?", (report,))
    assert fake.core.live_objects("vector_store") == [store]  # the same store
    assert stream_requests(fake)[-1].stores == {store: [notes.sha256, report.sha256]}
    await page.send("The notes again", (notes,))
    uploads = [r for r in fake.core.requests("POST") if r.path == "/files"]
    assert len(uploads) == 2  # the same file is not uploaded twice
    # Should the app die before the session ends, what it made expires on its own.
    assert all(r.body["expires_after[anchor]"] == "created_at" for r in uploads)
    assert fake.core.requests("POST", "/vector_stores")[0].body["expires_after"]["anchor"] == "last_active_at"
    assert {fake.core.files.sha256(f) for f in session.conv.uploads.values()} == {notes.sha256, report.sha256}

    await session.close()  # what closing the tab calls
    assert fake.core.live_objects("vector_store") == []
    assert fake.core.files.files == {}
    assert fake.core.live_objects("conversation") == []
    await rt.shutdown()


async def test_the_search_over_the_sessions_store_shows_what_it_found(fake: Fake, tmp_path: Path) -> None:
    rt = runtime(fake, SEARCH_CONFIG)
    session = rt.new_session()
    notes = attach(tmp_path, "notes.txt", b"The launch code is 4242.\n")
    search = synth.FileSearchCall(["launch code"], results=[("file-x", "notes.txt", 0.9)])
    raws = synth.responses_stream(["It is 4242."], builtins=[search])
    fake.push(Script(events=synth.timed(raws, step=0)))
    values = [v async for v in session.turn("What is the code?", [], attachments=(notes,))]
    assert stream_requests(fake)[-1].body["include"] == ["file_search_call.results"]  # or no results come back
    final = values[-1]
    assert isinstance(final, list)
    (bubble,) = [m for m in final if m.get("metadata")]
    assert "Found: notes.txt" in bubble["content"]
    await session.close()
    await rt.shutdown()


async def test_configured_stores_are_searched_with_the_sessions_own(fake: Fake, tmp_path: Path) -> None:
    config = BASE_CONFIG + "tools:\n  - type: file_search\n    vector_store_ids: [vs_team]\n    max_num_results: 3\n"
    rt = runtime(fake, config)
    page = Page(rt.new_session())
    await page.send("Hello")
    assert stream_requests(fake)[-1].body["tools"] == [
        {"type": "file_search", "vector_store_ids": ["vs_team"], "max_num_results": 3}
    ]
    notes = attach(tmp_path, "notes.md", b"# Plan\nShip it.\n")
    await page.send("What is the plan?", (notes,))
    store = page.session.conv.vector_store_id
    assert stream_requests(fake)[-1].stores == {"vs_team": [], store: [notes.sha256]}
    await page.session.close()
    await rt.shutdown()


async def test_a_document_only_message_names_its_searched_files(fake: Fake, tmp_path: Path) -> None:
    rt = runtime(fake, SEARCH_CONFIG)
    page = Page(rt.new_session())
    notes = attach(tmp_path, "notes.txt", b"Nothing much.\n")
    await page.send("", (notes,))
    assert fake.core.contexts[-1] == [("user", "[file: notes.txt]")]
    await page.session.close()
    await rt.shutdown()


async def test_a_document_file_search_cannot_take_is_read_instead(fake: Fake, tmp_path: Path) -> None:
    """A CSV is not a file_search type: with file_search it is still an input_file, and
    no store is made for it."""
    rt = runtime(fake, SEARCH_CONFIG)
    page = Page(rt.new_session())
    table = attach(tmp_path, "table.csv", b"id,value\n1,2\n")
    await page.send("Sum it", (table,))
    assert fake.core.contexts[-1] == [("user", "Sum it"), ("file", table.sha256)]
    assert fake.core.live_objects("vector_store") == [] and fake.core.files.files == {}
    await page.session.close()
    await rt.shutdown()


async def test_a_pdf_is_named_as_one_whatever_it_was_called(fake: Fake, tmp_path: Path) -> None:
    rt = runtime(fake, SEARCH_CONFIG)
    page = Page(rt.new_session())
    await page.send("Read", (attach(tmp_path, "scan", b"%PDF-1.4 no extension\n"),))
    (file_id,) = page.session.conv.uploads.values()
    assert fake.core.files.files[file_id].filename == "scan.pdf"
    await page.session.close()
    await rt.shutdown()


@pytest.mark.parametrize(("name", "data"), [("notes.csv", b"id,value\n1,2\n"), ("paper.pdf", b"%PDF-1.4 tiny\n")])
async def test_without_file_search_a_document_is_an_input_file(fake: Fake, tmp_path: Path, name: str, data: bytes) -> None:
    rt = runtime(fake)
    page = Page(rt.new_session())
    doc = attach(tmp_path, name, data)
    await page.send("Summarise", (doc,))
    assert fake.core.contexts[-1] == [("user", "Summarise"), ("file", sha(data))]
    part = stream_requests(fake)[-1].body["input"][-1]["content"][1]
    assert (part["type"], part["filename"]) == ("input_file", name)
    assert part["file_data"].startswith(f"data:{doc.mime};base64,")
    assert fake.core.files.files == {} and fake.core.live_objects("vector_store") == []
    await page.session.close()
    await rt.shutdown()


async def test_closing_deletes_everything_even_when_one_deletion_fails(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(fake, SEARCH_CONFIG)
    session = rt.new_session()
    page = Page(session)
    await page.send("Read these", (attach(tmp_path, "a.txt", b"alpha\n"), attach(tmp_path, "b.txt", b"bravo\n")))
    store = session.conv.vector_store_id
    first = next(iter(session.conv.uploads.values()))
    route = fake.core.files.route

    def failing(method: str, parts: list[str], body: Any, query: Any) -> Reply | None:
        if method == "DELETE" and parts[:2] in (["vector_stores", store], ["files", first]):
            return Reply(500, {"error": {"message": "boom", "type": "server_error", "code": None}})
        return route(method, parts, body, query)

    monkeypatch.setattr(fake.core.files, "route", failing)
    await session.close()  # raises nothing
    assert list(fake.core.files.files) == [first]  # the other file went
    assert fake.core.live_objects("conversation") == []  # and so did the conversation
    assert fake.core.live_objects("vector_store") == [store]
    deletes = [r.path for r in fake.core.requests("DELETE")]
    assert deletes[0] == f"/vector_stores/{store}" and deletes[-1].startswith("/conversations/")
    await rt.shutdown()


# -- the code interpreter ----------------------------------------------------------------


async def test_the_code_interpreter_gets_documents_as_container_files(fake: Fake, tmp_path: Path) -> None:
    rt = runtime(fake, CODE_CONFIG)
    page = Page(rt.new_session())
    await page.send("Hello")
    assert stream_requests(fake)[-1].body["tools"] == [{"type": "code_interpreter", "container": {"type": "auto"}}]
    data = attach(tmp_path, "data.csv", b"x,y\n1,2\n2,4\n")
    await page.send("Plot it", (data,))
    (file_id,) = page.session.conv.uploads.values()
    container = stream_requests(fake)[-1].body["tools"][0]["container"]
    assert container == {"type": "auto", "file_ids": [file_id]}
    assert fake.core.files.sha256(file_id) == data.sha256
    assert fake.core.contexts[-1][-1] == ("file", data.sha256)  # and readable by the model itself
    await page.send("Again")  # a new container (the old one expired) gets it too
    assert stream_requests(fake)[-1].body["tools"][0]["container"]["file_ids"] == [file_id]
    await page.session.close()
    assert fake.core.files.files == {}
    await rt.shutdown()


class Recorder(NullTap):
    def __init__(self) -> None:
        self.files: list[tuple[str, str, bytes]] = []

    def output_file(self, file_id: str, name: str, data: bytes) -> None:
        self.files.append((file_id, name, data))


PLOT = png(4, 4, (0, 128, 0))
CITE = {
    "type": "container_file_citation",
    "container_id": "cntr_abc",
    "file_id": "cfile_plot1",
    "filename": "plot.png",
    "start_index": 9,
    "end_index": 17,
}


def plot_script() -> Script:
    ci = synth.CodeInterpreterCall("plt.savefig('plot.png')", logs="")
    events = synth.responses_stream(synth.split_text("Here is plot.png.", 4), builtins=[ci], annotations=[CITE])
    return Script(events=synth.timed(events, step=0), files={"cfile_plot1": ("plot.png", PLOT)})


async def code_turn(fake: Fake, outputs: Path | None) -> tuple[list[StreamEvent], Recorder]:
    config = parse_config(CODE_CONFIG)
    backend = ResponsesBackend(openai.AsyncOpenAI(api_key=TEST_KEY, base_url=fake.url, max_retries=0), config)
    tap = Recorder()
    fake.push(plot_script())
    events = [e async for e in backend.turn(Conversation(), "Plot y = 2x", [], TurnContext(tap=tap, outputs=outputs))]
    await backend.client.close()
    return events, tap


async def test_a_file_the_interpreter_made_is_downloaded_recorded_and_shown(fake: Fake, tmp_path: Path) -> None:
    events, tap = await code_turn(fake, tmp_path)
    files = [e for e in events if e.kind == "file"]
    assert [(e.text, e.extra) for e in files] == [("plot.png", {"mime": "image/png"})]
    assert files[0].url is not None and Path(files[0].url).read_bytes() == PLOT
    assert Path(files[0].url).is_relative_to(tmp_path)
    assert tap.files == [("cfile_plot1", "plot.png", PLOT)]
    # Cited twice (the annotation event and the final response): downloaded once.
    assert len(fake.core.requests("GET", "/containers/cntr_abc/files/cfile_plot1/content")) == 1
    assert events.index(files[0]) < len(events) - 1 and events[-1].kind == "turn_end"
    assert events[-1].status == "completed"


async def test_without_an_outputs_folder_nothing_is_downloaded(fake: Fake) -> None:
    events, tap = await code_turn(fake, None)
    assert [e for e in events if e.kind == "file"] == [] and tap.files == []
    assert fake.core.requests("GET", "/containers/") == []
    assert [e.text for e in events if e.kind == "citation"] == ["plot.png"]  # still named


async def test_a_failed_download_is_a_notice_not_a_failed_turn(fake: Fake, tmp_path: Path) -> None:
    config = parse_config(CODE_CONFIG)
    backend = ResponsesBackend(openai.AsyncOpenAI(api_key=TEST_KEY, base_url=fake.url, max_retries=0), config)
    script = plot_script()
    fake.push(Script(events=script.events))  # the stream cites a file the server does not have
    events = [e async for e in backend.turn(Conversation(), "Plot", [], TurnContext(outputs=tmp_path))]
    await backend.client.close()
    notices = [e.text for e in events if e.kind == "notice"]
    assert notices == ["Could not download plot.png: the server does not have it (404)."]
    assert events[-1].status == "completed"


def test_the_adapter_reports_cited_container_files_once() -> None:
    adapter = ResponsesAdapter()
    for raw in synth.responses_stream(["See ", "plot.png", "."], annotations=[CITE, {**CITE, "start_index": 0}]):
        adapter.handle(raw)
    assert list(adapter.produced) == ["cfile_plot1"]
    produced = adapter.produced["cfile_plot1"]
    assert (produced.container_id, produced.filename) == ("cntr_abc", "plot.png")


def test_a_file_cited_only_in_the_final_response_is_reported() -> None:
    adapter = ResponsesAdapter()
    raws = [
        r
        for r in synth.responses_stream(["See plot.png."], annotations=[CITE])
        if isinstance(r.data, dict) and r.data.get("type") != "response.output_text.annotation.added"
    ]
    for raw in raws:
        adapter.handle(raw)
    assert list(adapter.produced) == ["cfile_plot1"]


def test_a_server_chosen_name_cannot_leave_the_outputs_folder() -> None:
    adapter = ResponsesAdapter()
    evil = {**CITE, "file_id": "../../x", "filename": "../../../etc/passwd"}
    adapter.handle(
        RawEvent("response.output_text.annotation.added", {"type": "response.output_text.annotation.added", "annotation": evil})
    )
    produced = adapter.produced["../../x"]
    assert _safe_part(produced.filename, "file") == "passwd"
    assert _safe_part(produced.file_id, "download") == "x"
    assert _safe_part("..", "file") == "file"


async def test_a_file_search_turn_recorded_live_replays_and_retries(fake: Fake, tmp_path: Path) -> None:
    """A document sent for file_search is in the session's vector store, not in the
    message: the replay still answers it (the store's files count as the message's,
    ``TurnRequest.searchable``), on Retry too, and not for another document."""
    doc = attach(tmp_path, "plan.md", b"# Plan\nLaunch on Tuesday.\n")
    records = tmp_path / "records"
    live = Runtime(make_settings("responses", url=fake.url, config=SEARCH_CONFIG, record_dir=records, record_attachments=True))
    page = Page(live.new_session())
    answer = await page.send("When is the launch?", (doc,))
    assert answer == "Echo: When is the launch?"
    await page.session.close()
    [recorded] = records.glob("*.jsonl")

    replay = Runtime(replay_settings(recorded, config=parse_config(SEARCH_CONFIG)))
    again = Page(replay.new_session())
    assert await again.send("When is the launch?", (doc,)) == answer
    again.history.clear()  # Retry from an empty chat: the document is still in the store
    assert await again.send("When is the launch?", (doc,)) == answer
    other = attach(tmp_path, "other.md", b"# Another plan\n")
    assert "nothing in it answers" in await Page(replay.new_session()).send("When is the launch?", (other,))
