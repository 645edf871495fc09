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
