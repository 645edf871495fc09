"""A document in Chromium, on the two APIs with file_search: the page uploads it, the
app puts it in the session's own vector store, the model's search reaches it (the fake
server's view of the stores each streaming request may search), a second document joins
the same store, and closing the tab deletes the store, the uploaded files and the
conversation or thread."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import AppProcess
from conftest import BASE_CONFIG, TEST_KEY
from test_attachments_browser import Echo, open_page
from test_attachments_browser import browser as _browser  # noqa: F401 (the shared Chromium fixture, by this name)

from streamchat.replayapi import Reply
from streamchat.serve import serve_in_thread

pytestmark = pytest.mark.browser

WAIT = 20.0


class Watched(Echo):
    """The echo server, noting every request (the tab's cleanup comes after the page is gone)."""

    def __init__(self) -> None:
        super().__init__()
        self.handled = threading.Condition()

    async def handle(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Reply:
        reply = await super().handle(method, path, body, headers)
        with self.handled:
            self.handled.notify_all()
        return reply


def attach(chat: Any, path: Path) -> None:
    """Add a document with the upload button; it is ready when its thumbnail (an icon,
    not its name, for a document) is in the textbox."""
    chat.page.locator("input[type=file]").first.set_input_files([str(path)])
    chat.page.locator("[aria-label='File thumbnail']").first.wait_for()


@pytest.mark.parametrize("api", ["responses", "assistants"])
def test_a_document_is_searched_in_the_sessions_store_which_goes_with_the_tab(api: str, _browser: Any, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "config.yaml"
    config.write_text(BASE_CONFIG + "tools:\n  - type: file_search\n", encoding="utf-8")
    plan, notes = tmp_path / "plan.md", tmp_path / "notes.txt"
    plan.write_text("# Launch plan\nWe launch on Tuesday 16 March.\n", encoding="utf-8")
    notes.write_text("Dana signs off on the release notes.\n", encoding="utf-8")
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (plan, notes)}
    fake = Watched()
    server = serve_in_thread(fake)
    env = {"OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": server.url, "STREAMCHAT_CONFIG": str(config)}
    app = AppProcess({**env, "STREAMCHAT_BACKEND": api})
    streaming = "/responses" if api == "responses" else "/runs"
    try:
        app.wait_ready()
        chat = open_page(_browser, app.url, fake, [])
        attach(chat, plan)
        chat.send("When is the launch?", answers=1, expect="Got: When is the launch?")
        [store] = fake.live_objects("vector_store")
        assert fake.requests("POST", streaming)[-1].stores == {store: [sha["plan.md"]]}
        attach(chat, notes)
        chat.send("Who signs off?", answers=2, expect="Got: Who signs off?")
        assert fake.live_objects("vector_store") == [store]  # the session's one store
        assert fake.requests("POST", streaming)[-1].stores == {store: [sha["plan.md"], sha["notes.txt"]]}
        uploaded = {f.sha256 for f in fake.files.files.values()}
        assert uploaded == set(sha.values())
        remote = "conversation" if api == "responses" else "thread"
        assert len(fake.live_objects(remote)) == 1

        chat.page.context.close()  # the tab closes: Gradio unloads the session, which cleans up
        with fake.handled:
            gone = fake.handled.wait_for(
                lambda: not fake.live_objects("vector_store") and not fake.files.files and not fake.live_objects(remote), WAIT
            )
        assert gone, (fake.live_objects("vector_store"), list(fake.files.files), fake.live_objects(remote), app.output[-2000:])
    finally:
        app.stop()
        server.stop()
