"""A public Space in a real browser: `python app.py` as a Space runs it (``SPACE_ID`` and
``SYSTEM=spaces`` set), live against a fake OpenAI server on 127.0.0.1, with
``STREAMCHAT_RATE_LIMIT=3/minute``, an output-token cap and recording on. Each browser
context is one visitor: the Spaces proxy's ``X-Forwarded-For`` header gives its address.
Nothing leaves the machine: the browser answers requests to huggingface.co itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, AppProcess, require_browser
from conftest import TEST_KEY

from streamchat.replayapi import ReplayAPI, Script, TurnRequest
from streamchat.serve import RunningServer, serve_in_thread
from streamchat.testing import synth

pytestmark = pytest.mark.browser

WAIT_MS = 20_000
SPACE_ID = "tester/streaming-assistant"
CAP = 48


class Space:
    def __init__(self, app: AppProcess, fake: ReplayAPI, record_dir: Path) -> None:
        self.app, self.fake, self.record_dir = app, fake, record_dir

    def users_seen(self) -> list[str]:
        """The user messages that reached the provider, in order."""
        return [r.body["messages"][-1]["content"] for r in self.fake.requests("POST", "/chat/completions")]


def echo(req: TurnRequest) -> Script:
    return Script(events=synth.timed(synth.chat_stream(synth.split_text(f"Echo: {req.user}", 4)), step=0))


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    require_browser()
    record_dir = tmp_path_factory.mktemp("space") / "recorded"
    fake = ReplayAPI(echo, api_key=TEST_KEY)
    server: RunningServer = serve_in_thread(fake)
    app = AppProcess(
        {
            "OPENAI_API_KEY": TEST_KEY,
            "OPENAI_BASE_URL": server.url,
            "STREAMCHAT_BACKEND": "chat",
            "STREAMCHAT_MODEL": "fake-model",
            "STREAMCHAT_RECORD": str(record_dir),
            "STREAMCHAT_RATE_LIMIT": "3/minute",
            "STREAMCHAT_MAX_OUTPUT_TOKENS": str(CAP),
            "SPACE_ID": SPACE_ID,
            "SYSTEM": "spaces",
        }
    )
    try:
        app.wait_ready()
        yield Space(app, fake, record_dir)
    finally:
        app.stop()
        server.stop()


@pytest.fixture(scope="module")
def browser(space: Space) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def visit(browser: Any, space: Space, address: str) -> Any:
    """A new visitor (its own context) at ``address``, on the Space's page."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, extra_http_headers={"X-Forwarded-For": address})
    ctx.set_default_timeout(WAIT_MS)
    # huggingface.co never answers: a stand-in page does, so a popup keeps its address.
    ctx.route("https://huggingface.co/**", lambda route: route.fulfill(status=200, body="stand-in", content_type="text/plain"))
    page = ctx.new_page()
    page.goto(space.app.url, wait_until="domcontentloaded")
    page.wait_for_selector("textarea")
    return page


def send(page: Any, text: str, replies: int) -> str:
    """Send ``text`` and wait for the chat to hold ``replies`` replies; the last one's text."""
    page.locator("textarea").first.fill(text)
    page.locator("textarea").first.press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=bot]').length === n && !document.querySelector('.stop-button:not(.hidden)')",
        arg=replies,
    )
    page.wait_for_function("() => !document.querySelector('textarea').disabled")
    return str(page.locator("[data-testid=bot]").last.text_content()).strip()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_the_space_offers_duplicate_and_says_how_to_get_a_private_copy(browser: Any, space: Space) -> None:
    page = visit(browser, space, "192.0.2.10")
    try:
        banner = " ".join(page.locator("#mode-banner").text_content().split())
        assert "Duplicate this Space" in banner and "OPENAI_API_KEY" in banner
        assert "3 messages a minute per visitor" in banner and f"answers up to {CAP} tokens" in banner
        button = page.locator("#duplicate")
        assert button.is_visible() and "Duplicate" in button.text_content()
        shot(page, "space-01-duplicate")
        with page.expect_popup() as popup:
            button.click()
        assert popup.value.url == f"https://huggingface.co/spaces/{SPACE_ID}?duplicate=true"
    finally:
        page.context.close()


def test_the_fourth_and_fifth_quick_messages_get_the_limit_and_another_visitor_is_unaffected(browser: Any, space: Space) -> None:
    page = visit(browser, space, "203.0.113.7")
    other = visit(browser, space, "198.51.100.9")
    try:
        replies = [send(page, f"quick {n}", n) for n in range(1, 6)]
        assert replies[:3] == ["Echo: quick 1", "Echo: quick 2", "Echo: quick 3"]
        for refused in replies[3:]:
            assert "limit of 3 messages a minute" in refused and "Try again in" in refused
        shot(page, "space-02-rate-limited")
        assert send(other, "another visitor", 1) == "Echo: another visitor"
        seen = space.users_seen()
        assert [u for u in seen if u.startswith("quick")] == ["quick 1", "quick 2", "quick 3"]
        assert "another visitor" in seen
        # Every request that reached the provider carried the cap, in Chat's parameters.
        for request in space.fake.requests("POST", "/chat/completions"):
            assert request.body["max_completion_tokens"] == CAP and request.body["max_tokens"] == CAP
    finally:
        page.context.close()
        other.context.close()


def test_a_thumbs_up_lands_in_the_sessions_recording(browser: Any, space: Space) -> None:
    page = visit(browser, space, "192.0.2.77")
    try:
        assert send(page, "rate me", 1) == "Echo: rate me"
        assert send(page, "and me", 2) == "Echo: and me"
        page.locator("[data-testid=bot]").first.hover()
        page.get_by_role("button", name="Like", exact=True).first.click()
        page.locator("[data-testid=bot]").last.hover()
        page.get_by_role("button", name="Dislike", exact=True).last.click()

        def votes() -> dict[int, str]:
            files = [p for p in space.record_dir.glob("*.jsonl") if "rate me" in p.read_text(encoding="utf-8")]
            assert len(files) == 1
            lines = [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines()]
            return {line["turn"]: line["value"] for line in lines if line["kind"] == "feedback"}

        # The vote travels through Gradio's queue to the server, which writes it: poll the
        # file (a wait for the write, with a deadline; nothing in the app is paced by it).
        for _ in range(200):
            if votes() == {0: "like", 1: "dislike"}:
                break
            page.wait_for_timeout(50)
        assert votes() == {0: "like", 1: "dislike"}
        shot(page, "space-03-voted")
    finally:
        page.context.close()
