"""Replay shows the recorded files in a real browser (headless Debian chromium, pip's
playwright): a recording made with ``--record-attachments`` offers its image prompt as
an example with the image's thumbnail, and demo mode's replayed user message shows it
too, answered with the recorded answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, AppProcess, require_browser
from images import png

from streamchat.attachments import Limits, classify
from streamchat.recording import RecordingWriter, header
from streamchat.testing import synth

pytestmark = pytest.mark.browser

WAIT_MS = 30_000
PROMPT = "What colour is this square?"
ANSWER = "It is a red square."


def write_recording(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    writer = RecordingWriter(folder / "square.jsonl", header("responses", "test-model", "x"), record_attachments=True)
    writer.begin_turn(PROMPT, position=0, attachments=[classify(png(24, 24, (220, 20, 20)), "square.png", Limits())])
    writer.stream_started()
    for _, raw in synth.timed(synth.responses_stream(synth.split_text(ANSWER, 5)), step=0):
        writer.event(raw)
    writer.end_turn("completed")
    writer.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    require_browser()
    folder = tmp_path_factory.mktemp("thumbs") / "recordings"
    write_recording(folder)
    process = AppProcess({"STREAMCHAT_REPLAY": str(folder), "STREAMCHAT_SPEED": "0"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def page(app: AppProcess) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        tab = context.new_page()
        tab.goto(app.url + "/", wait_until="domcontentloaded")
        tab.wait_for_selector("textarea")
        yield tab
        browser.close()


LOADED_IMAGES = """(scope) => [...document.querySelectorAll(scope + ' img')]
  .filter(i => i.complete && i.naturalWidth === 24).map(i => i.getAttribute('src') || '')"""


def test_the_example_shows_the_recorded_image(page: Any) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('img')].some(i => i.complete && i.naturalWidth === 24)", timeout=WAIT_MS
    )
    assert PROMPT in (page.locator("body").text_content() or "")
    assert page.evaluate(LOADED_IMAGES, "body")  # served by the app: the recorded bytes, decoded


def test_the_demo_replays_the_message_with_its_thumbnail_and_the_recorded_answer(page: Any) -> None:
    page.wait_for_selector("#demo-play")
    page.click("#demo-play")
    page.wait_for_function("t => document.body.innerText.includes(t)", arg=ANSWER, timeout=WAIT_MS)
    page.wait_for_function(f"() => ({LOADED_IMAGES})('[role=log]').length > 0", timeout=WAIT_MS)
    [src] = page.evaluate(LOADED_IMAGES, "[role=log]")  # the user message's picture, decoded
    assert src.endswith("/square.png")
    assert "nothing in it answers" not in (page.locator("body").text_content() or "")


@pytest.fixture(scope="module")
def bundled_app() -> Iterator[AppProcess]:
    """The app as the README's first command starts it: no key, the bundled recordings."""
    require_browser()
    process = AppProcess({"STREAMCHAT_SPEED": "0"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("recording", "file_name", "answer"),
    [
        ("17-image-question", "bar-chart.png", "three bars rising from left to right"),
        ("18-file-search-upload", "launch-plan.md", "Dana Whitfield, head of product"),
    ],
)
def test_the_bundled_multimodal_recordings_replay_offline_with_their_files(
    bundled_app: AppProcess, recording: str, file_name: str, answer: str
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(WAIT_MS)
            tab.goto(f"{bundled_app.url}/?autoplay=1&recording={recording}&speed=0", wait_until="domcontentloaded")
            tab.wait_for_function("t => document.querySelector('[role=log]')?.innerText.includes(t)", arg=answer)
            log = tab.locator("[role=log]")
            assert "nothing in it answers" not in (log.text_content() or "")
            if file_name.endswith(".png"):  # the recorded chart, decoded, in the user's message
                tab.wait_for_function(
                    "() => [...document.querySelectorAll('[data-testid=user] img')].some(i => i.complete && i.naturalWidth === 160)"
                )
                srcs = tab.evaluate("[...document.querySelectorAll('[data-testid=user] img')].map(i => i.src)")
                assert any(s.endswith("/" + file_name) for s in srcs)
            else:  # a document: its name in the user's message, and the search that found it
                assert file_name in (tab.locator("[data-testid=user]").first.text_content() or "")
                assert "Searched files" in (log.text_content() or "")
        finally:
            browser.close()
