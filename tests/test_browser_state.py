"""The model sees what the chat shows, in Chromium, on every backend: send, Undo, Retry,
Edit, a tool turn, New chat, and a saved chat opened after the app restarted.

One fake server (it keeps server-side state as OpenAI does and logs, per streaming
request, what the model saw) and one app process per backend; one browser, one page per
backend, reused through the whole flow. The fake answers with the user messages it saw,
so after every step the answer on the page and the server's log must agree.

The histories the browser sends to the chat function are captured on the way; they are
the payloads kept in tests/fixtures/browser_history.json (``STREAMCHAT_WRITE_FIXTURES=1``
rewrites that file from a run).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, AppProcess, require_browser
from conftest import BASE_CONFIG, TEST_KEY

from streamchat.backends.history import content_files, history_key, visible
from streamchat.replayapi import ReplayAPI, Script, TurnRequest
from streamchat.serve import RunningServer, serve_in_thread
from streamchat.testing import synth

pytestmark = pytest.mark.browser

APIS = ["responses", "assistants", "chat"]
FIXTURE = Path(__file__).parent / "fixtures" / "browser_history.json"
WAIT_MS = 20_000
TOOL_PROMPT = "roll a die"
CONFIG = (
    BASE_CONFIG
    + """
tools:
  - name: roll_dice
    description: Roll dice.
    handler: streamchat.demo_tools:roll_dice
    parameters:
      type: object
      properties:
        sides: {type: integer}
        seed: {type: integer}
      required: [sides, seed]
      additionalProperties: false
"""
)
BUILD = {"responses": synth.responses_stream, "assistants": synth.assistants_stream, "chat": synth.chat_stream}

# The answers (tool bubbles left out), the user messages, and the saved chats' titles.
PAGE_JS = """
(() => {
  window.__state = {
    answers: () => [...document.querySelectorAll('[data-testid=bot]')]
      .filter(b => !b.querySelector('.thought-group')).map(b => b.textContent.trim()),
    users: () => [...document.querySelectorAll('[data-testid=user]')].map(b => b.textContent.trim()),
  };
})();
"""


def seen_text(users: list[str]) -> str:
    return "Seen: " + " | ".join(users)


class SeeingFake(ReplayAPI):
    """Answers with the user messages the model saw; a die roll for ``TOOL_PROMPT``."""

    def __init__(self) -> None:
        super().__init__(self._answer, api_key=TEST_KEY)
        self.changed = threading.Condition()

    def wait_contexts(self, n: int) -> None:
        """Until ``n`` streaming requests have come in."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.contexts) >= n, WAIT_MS / 1000), (n, self.contexts)

    def _answer(self, req: TurnRequest) -> Script:
        with self.changed:
            self.changed.notify_all()
        if req.user == TOOL_PROMPT and req.stream == 0:
            call = synth.FunctionCall("roll_dice", '{"sides": 6, "seed": 7}', call_id=f"call_dice_{req.position}")
            return Script(events=synth.timed(BUILD[req.api](calls=[call]), step=0))
        users = [text for role, text in req.context if role == "user"]
        return Script(events=synth.timed(BUILD[req.api](synth.split_text(seen_text(users), 3)), step=0))


class Setup:
    def __init__(self, fake: SeeingFake, server: RunningServer, apps: dict[str, AppProcess], env: dict[str, dict[str, str]]):
        self.fake, self.server, self.apps, self.env = fake, server, apps, env
        self.pages: dict[str, Any] = {}
        """Each backend's page, kept for the second half of the flow (after the restart)."""
        self.kept: dict[str, list[tuple[str, str]]] = {}
        """What the model saw for the chat that is reopened after the restart."""

    def restart_all(self) -> None:
        """Stop every app and start each again on its port, all at once."""
        AppProcess.stop_all(*self.apps.values())
        self.apps = {api: AppProcess(self.env[api], port=old.port) for api, old in self.apps.items()}
        for app in self.apps.values():
            app.wait_ready()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_browser()
    base = tmp_path_factory.mktemp("state")
    config = base / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    fake = SeeingFake()
    server = serve_in_thread(fake)
    env = {
        api: {
            "OPENAI_API_KEY": TEST_KEY,
            "OPENAI_BASE_URL": server.url,
            "STREAMCHAT_CONFIG": str(config),
            "STREAMCHAT_BACKEND": api,
        }
        for api in APIS
    }
    apps = {api: AppProcess(env[api]) for api in APIS}  # started together
    s = Setup(fake, server, apps, env)
    try:
        for app in apps.values():
            app.wait_ready()
        yield s
    finally:
        AppProcess.stop_all(*s.apps.values())
        server.stop()


@pytest.fixture(scope="module")
def browser(setup: Setup) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def captured() -> Iterator[list[list[dict[str, Any]]]]:
    """The histories the browser sent to the chat function, over the whole module."""
    out: list[list[dict[str, Any]]] = []
    yield out
    if os.environ.get("STREAMCHAT_WRITE_FIXTURES") == "1" and out:
        unique = list({json.dumps(h, ensure_ascii=False, sort_keys=True): h for h in out}.values())
        others = [h for h in json.loads(FIXTURE.read_text(encoding="utf-8")) if with_files(h)]  # test_attachments_browser's
        FIXTURE.write_text(json.dumps(unique + others, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def with_files(history: list[dict[str, Any]]) -> bool:
    return any(m.get("role") == "user" and content_files(m.get("content")) for m in history)


class Chat:
    """One page of one app, and the fake's log, step by step."""

    def __init__(self, page: Any, fake: SeeingFake, captured: list[list[dict[str, Any]]]) -> None:
        self.page, self.fake, self.captured = page, fake, captured
        page.on("request", self._request)

    def _request(self, request: Any) -> None:
        """Keep each chat history the page sends (the chatbot's value, which Gradio
        copies into the history the chat function gets)."""
        if request.method != "POST" or "/gradio_api/" not in request.url:
            return
        try:
            body = request.post_data_json
        except ValueError:
            return
        for value in (body.get("data") or []) if isinstance(body, dict) else []:
            if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
                self.captured.append(value)

    def answers(self) -> list[str]:
        return list(self.page.evaluate("window.__state.answers()"))

    def users(self) -> list[str]:
        return list(self.page.evaluate("window.__state.users()"))

    def expect(self, action: Any, users_seen: list[str], *, bubbles: int, requests: int = 1) -> None:
        """Do ``action``; then the model saw ``users_seen`` (one new request) and the
        page shows the answer to it, as the last of ``bubbles`` answers."""
        before = len(self.fake.contexts)
        action()
        self.fake.wait_contexts(before + requests)  # a Retry's answer reads as the one it replaces
        answer = seen_text(users_seen)
        self.page.wait_for_function(
            "([text, n]) => { const a = window.__state.answers(); return a.length === n && a[n - 1] === text; }",
            arg=[answer, bubbles],
        )
        # The event chain ends (the history synchronized, the textbox enabled again)
        # before the next click, as it would for a person.
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('textarea')].some(t => !t.disabled && !t.classList.contains('edit-textarea'))"
        )
        assert len(self.fake.contexts) == before + requests
        assert [t for r, t in self.fake.contexts[-1] if r == "user"] == users_seen
        assert self.answers()[-1] == answer  # the page and the server agree

    def send(self, text: str) -> None:
        box = self.page.locator("textarea[data-testid=textbox]").or_(self.page.locator("textarea:not(.edit-textarea)")).first
        box.fill(text)
        box.press("Enter")

    def click_last(self, label: str) -> None:
        self.page.locator(f"button[aria-label={label}]").last.click()


def open_chat(browser: Any, url: str) -> Any:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    page.add_init_script(PAGE_JS)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("textarea")
    return page


@pytest.fixture(scope="module")
def restarted(setup: Setup) -> Setup:
    """The apps after a restart (their remote state and memory gone), once for all."""
    setup.restart_all()
    return setup


@pytest.mark.parametrize("api", APIS)
def test_the_model_sees_what_the_chat_shows(api: str, setup: Setup, browser: Any, captured: list[Any]) -> None:
    fake = setup.fake
    page = setup.pages[api] = open_chat(browser, setup.apps[api].url)
    chat = Chat(page, fake, captured)
    chat.expect(lambda: chat.send("alpha"), ["alpha"], bubbles=1)
    chat.expect(lambda: chat.send("bravo"), ["alpha", "bravo"], bubbles=2)

    # Undo: bravo leaves the page, and the model's context.
    chat.click_last("Undo")
    page.wait_for_function("() => window.__state.users().length === 1")
    chat.expect(lambda: chat.send("charlie"), ["alpha", "charlie"], bubbles=2)
    assert fake.contexts[-1] == [("user", "alpha"), ("assistant", seen_text(["alpha"])), ("user", "charlie")]

    # Retry: the same question once, not twice.
    chat.expect(lambda: chat.click_last("Retry"), ["alpha", "charlie"], bubbles=2)
    assert fake.contexts[-1] == [("user", "alpha"), ("assistant", seen_text(["alpha"])), ("user", "charlie")]
    assert chat.users() == ["alpha", "charlie"]

    # Edit the first message: the model sees the edited one alone.
    def edit() -> None:
        page.locator("[data-testid=user]").first.hover()
        page.locator("button[aria-label=Edit]").first.click()
        page.locator("textarea.edit-textarea").fill("delta")
        page.locator("button[aria-label=Submit]").first.click()

    chat.expect(edit, ["delta"], bubbles=1)
    assert fake.contexts[-1] == [("user", "delta")]

    # A tool turn: its bubble is on the page (and in the history), not the model's words.
    chat.expect(lambda: chat.send(TOOL_PROMPT), ["delta", TOOL_PROMPT], bubbles=2, requests=2)
    page.wait_for_selector(".thought-group")
    setup.kept[api] = list(fake.contexts[-1])

    # New chat: only the new message.
    page.get_by_role("button", name="New chat").click()
    page.wait_for_function("() => window.__state.users().length === 0")
    chat.expect(lambda: chat.send("foxtrot"), ["foxtrot"], bubbles=1)
    assert fake.contexts[-1] == [("user", "foxtrot")]


@pytest.mark.parametrize("api", APIS)
def test_a_saved_chat_reopened_after_a_restart(api: str, restarted: Setup, captured: list[Any]) -> None:
    """In the same browser as the flow above (saved chats live in its storage), after
    the app restarted, the "delta" chat is reopened and continued."""
    page, kept = restarted.pages[api], restarted.kept[api]
    chat = Chat(page, restarted.fake, captured)
    try:
        page.goto(restarted.apps[api].url, wait_until="domcontentloaded")
        page.wait_for_selector("textarea")
        page.locator("table td", has_text="delta").first.click()
        page.wait_for_function("() => window.__state.users().length === 2")
        assert chat.users() == ["delta", TOOL_PROMPT]
        chat.expect(lambda: chat.send("golf"), ["delta", TOOL_PROMPT, "golf"], bubbles=3)
        # Exactly that chat: its messages and answers, then the new one.
        users_and_answers = [(r, t) for r, t in restarted.fake.contexts[-1] if r in ("user", "assistant")]
        assert users_and_answers == [(r, t) for r, t in kept if r in ("user", "assistant")] + [
            ("assistant", seen_text(["delta", TOOL_PROMPT])),
            ("user", "golf"),
        ]
    finally:
        page.context.close()


def test_captured_browser_histories_match_the_fixture(captured: list[Any]) -> None:
    """What Chromium sent in this run has the shape the fixture keeps (content as lists
    of parts, the app's bubbles with ``metadata``) and reads as the same conversations."""
    if not captured:
        pytest.skip("runs after the browser flow, which captures the histories")
    kept = [h for h in json.loads(FIXTURE.read_text(encoding="utf-8")) if not with_files(h)]
    assert all(isinstance(m["content"], list) for h in captured for m in h)
    assert any(m.get("metadata") for h in captured for m in h)  # the tool bubble came back
    assert {history_key(visible(h)) for h in kept} <= {history_key(visible(h)) for h in captured}
