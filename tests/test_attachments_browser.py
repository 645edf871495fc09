"""Files in the chat, in Chromium: an image added with the upload button shows as a
thumbnail in the user's message and reaches the provider (Chat Completions: an
``image_url`` data URL whose bytes hash as the file's), is sent again with the next
turn, a file alone is a message, and a refused file gets one line and no request. On
Responses the same flow keeps one conversation: the history the page sends back after a
multimodal turn has the key the app expected (no reseed).

The histories the page sends with files are captured on the way: they are the
multimodal entries of tests/fixtures/browser_history.json (``STREAMCHAT_WRITE_FIXTURES=1``
rewrites them from a run; tests/test_browser_state.py keeps the others).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, AppProcess, require_browser
from conftest import BASE_CONFIG, TEST_KEY
from images import png

from streamchat import attachments as att
from streamchat.backends.history import content_files
from streamchat.replayapi import ReplayAPI, Script, TurnRequest
from streamchat.serve import serve_in_thread
from streamchat.testing import synth

pytestmark = pytest.mark.browser

FIXTURE = Path(__file__).parent / "fixtures" / "browser_history.json"
WAIT_MS = 20_000
BUILD = {"responses": synth.responses_stream, "assistants": synth.assistants_stream, "chat": synth.chat_stream}
PAGE_JS = """
(() => {
  window.__files = {
    answers: () => [...document.querySelectorAll('[data-testid=bot]')].map(b => b.textContent.trim()),
    userImages: () => [...document.querySelectorAll('[data-testid=user] img')].map(i => i.getAttribute('src') || ''),
    loaded: () => [...document.querySelectorAll('[data-testid=user] img')].filter(i => i.complete && i.naturalWidth > 0).length,
  };
})();
"""


def has_files(history: list[dict[str, Any]]) -> bool:
    return any(m.get("role") == "user" and content_files(m.get("content")) for m in history)


class Echo(ReplayAPI):
    """Answers "Got: <the user's text>"; counts its streaming requests."""

    def __init__(self) -> None:
        super().__init__(self._answer, api_key=TEST_KEY)
        self.changed = threading.Condition()
        self.streams = 0

    def _answer(self, req: TurnRequest) -> Script:
        with self.changed:
            self.streams += 1
            self.changed.notify_all()
        return Script(events=synth.timed(BUILD[req.api](synth.split_text(f"Got: {req.user or '(files)'}", 4)), step=0))


@pytest.fixture(scope="module")
def captured() -> Iterator[list[list[dict[str, Any]]]]:
    """The histories with files the page sent to the chat function, over the module."""
    out: list[list[dict[str, Any]]] = []
    yield out
    if os.environ.get("STREAMCHAT_WRITE_FIXTURES") == "1" and out:
        # Each page's last history holds every earlier one (and every shape of message).
        kept = [h for h in json.loads(FIXTURE.read_text(encoding="utf-8")) if not has_files(h)]
        longest = [h for h in out if not any(len(o) > len(h) and o[: len(h)] == h for o in out)]
        unique = list({json.dumps(h, ensure_ascii=False, sort_keys=True): h for h in longest}.values())
        FIXTURE.write_text(json.dumps(kept + unique, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    def __init__(self, page: Any, fake: Echo, captured: list[list[dict[str, Any]]]) -> None:
        self.page, self.fake, self.captured = page, fake, captured
        page.on("request", self._request)

    def _request(self, request: Any) -> None:
        if request.method != "POST" or "/gradio_api/" not in request.url:
            return
        try:
            body = request.post_data_json
        except ValueError:
            return
        for value in (body.get("data") or []) if isinstance(body, dict) else []:
            messages = isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value)
            if messages and has_files(value):
                self.captured.append(value)

    def box(self) -> Any:
        return self.page.locator("textarea").first

    def attach(self, *paths: Path) -> None:
        self.page.locator("input[type=file]").first.set_input_files([str(p) for p in paths])
        # The upload is done when the textbox shows the file (its thumbnail or name).
        for path in paths:
            self.page.get_by_text(path.name).or_(self.page.locator(f"img[src*='{path.name}']")).first.wait_for()

    def send(self, text: str, *, answers: int, expect: str, requests: int = 1) -> None:
        before = self.fake.streams
        if text:
            self.box().fill(text)
        self.box().press("Enter")
        self.page.wait_for_function(
            "([n, text]) => { const a = window.__files.answers(); return a.length === n && a[n - 1].includes(text); }",
            arg=[answers, expect],
        )
        self.page.wait_for_function("() => [...document.querySelectorAll('textarea')].some(t => !t.disabled)")
        assert self.fake.streams == before + requests


def open_page(browser: Any, url: str, fake: Echo, captured: list[Any]) -> Page:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    page.add_init_script(PAGE_JS)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("textarea")
    return Page(page, fake, captured)


@pytest.mark.parametrize("api", ["chat", "responses", "assistants"])
def test_an_uploaded_image_is_a_thumbnail_and_reaches_the_model(
    api: str, browser: Any, captured: list[Any], tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE_CONFIG + "attachments:\n  max_file_mb: 0.01\n", encoding="utf-8")
    cat, dog = tmp_path / "cat.png", tmp_path / "dog.png"
    cat.write_bytes(png(rgb=(250, 120, 0)))
    dog.write_bytes(png(rgb=(0, 120, 250)))
    huge = tmp_path / "huge.png"
    huge.write_bytes(png() + b"\0" * 20_000)
    fake = Echo()
    server = serve_in_thread(fake)
    env = {"OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": server.url, "STREAMCHAT_CONFIG": str(config)}
    app = AppProcess({**env, "STREAMCHAT_BACKEND": api})
    try:
        app.wait_ready()
        chat = open_page(browser, app.url, fake, captured)
        page = chat.page
        chat.attach(cat)
        chat.send("what is this", answers=1, expect="Got: what is this")
        # The thumbnail: an image in the user's message, loaded from the app's file route.
        page.wait_for_function("() => window.__files.loaded() === 1")
        [src] = page.evaluate("window.__files.userImages()")
        assert src.endswith("/cat.png") and "/gradio_api/file=" in src
        # Retry: the message goes again, its file with it.
        before = fake.streams
        page.locator("button[aria-label=Retry]").last.click()
        with fake.changed:
            assert fake.changed.wait_for(lambda: fake.streams == before + 1, WAIT_MS / 1000)
        page.wait_for_function("() => [...document.querySelectorAll('textarea')].some(t => !t.disabled)")
        assert page.evaluate("window.__files.answers()") == ["Got: what is this"]

        chat.send("and now?", answers=2, expect="Got: and now?")
        chat.attach(dog)  # a file alone is a message
        chat.send("", answers=3, expect="Got:")
        page.wait_for_function("() => window.__files.loaded() === 2")
        chat.send("last one", answers=4, expect="Got: last one")

        # Over the size limit: one line in the chat, and no request.
        chat.attach(huge)
        chat.send("too big", answers=5, expect="huge.png", requests=0)
        assert "over the limit of 0.01 MiB" in page.evaluate("window.__files.answers()")[-1]

        sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (cat, dog)}
        # What the model saw last (every backend, whatever form each image went in):
        # each image right after the message that carried it.
        assert fake.contexts[-1][:2] == [("user", "what is this"), ("image", sha["cat.png"])]
        assert ("image", sha["dog.png"]) in fake.contexts[-1]
        if api == "chat":
            bodies = [r.body for r in fake.requests("POST", "/chat/completions")]
            assert len(bodies) == 5
            assert [_sha(p) for p in _parts(bodies[1]["messages"][-1]) if p["type"] == "image_url"] == [sha["cat.png"]]
            images = [[_sha(part) for part in _parts(m) if part["type"] == "image_url"] for m in bodies[-1]["messages"]]
            # system, cat + "what is this", answer, "and now?", answer, dog alone, answer, "last one"
            assert images == [[], [sha["cat.png"]], [], [], [], [sha["dog.png"]], [], []]
            assert bodies[-1]["messages"][-1] == {"role": "user", "content": "last one"}
        elif api == "responses":  # one conversation all along: the page's history read as the app expected
            assert len(fake.requests("POST", "/conversations")) == 1
            assert len(fake.requests("POST", "/responses")) == 5
            parts = fake.requests("POST", "/responses")[0].body["input"][-1]["content"]
            assert sorted(p["type"] for p in parts) == ["input_image", "input_text"]
            assert att.data_url_bytes(next(p["image_url"] for p in parts if p["type"] == "input_image")) == cat.read_bytes()
        else:  # one thread all along; the image uploaded once, for vision, sent by file id
            assert len([r for r in fake.requests("POST") if r.path == "/threads"]) == 1
            uploads = [f for f in fake.files.files.values() if f.purpose == "vision"]
            assert {f.sha256 for f in uploads} == set(sha.values())
        page.context.close()
    finally:
        app.stop()
        server.stop()
    sent = [h for h in captured if any(content_files(m["content"]) for m in h)]
    assert sent, "the page sent histories with files"


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def _sha(part: dict[str, Any]) -> str:
    raw = att.data_url_bytes(part["image_url"]["url"])
    assert raw is not None
    return hashlib.sha256(raw).hexdigest()
