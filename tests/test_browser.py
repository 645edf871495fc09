"""The app in a real browser: headless Debian chromium driven by pip's playwright.

Two app processes serve the whole module: one in replay mode on recordings made here
(paced at speed 1 by the app's own replay clock, so streaming is visible), and one live
against a fake OpenAI server on 127.0.0.1 (assistants backend, recording on). Bubble
text is read with ``textContent``; a MutationObserver installed before the page loads
keeps every distinct state of the last answer, so a test can tell "streamed" from
"appeared at once" without sleeping. Screenshots of each state go to
artifacts/screenshots/.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LONG_PROMPT,
    SCREENSHOTS,
    TOOL_ANSWER,
    TOOL_PROMPT,
    TURN_PROMPT,
    AppProcess,
    require_browser,
    write_ui_recordings,
)
from conftest import TEST_KEY

from streamchat.replayapi import ReplayAPI, Script, TurnRequest
from streamchat.serve import RunningServer, serve_in_thread
from streamchat.testing import synth

pytestmark = pytest.mark.browser

WAIT_MS = 20_000

# Installed before any page script: records each distinct state of the chat.
SAMPLER = """
(() => {
  const answers = () => [...document.querySelectorAll('[data-testid=bot]')].filter(b => !b.querySelector('.thought-group'));
  window.__chat = {
    answers: () => answers().map(b => b.textContent),
    last: () => { const a = answers(); return a.length ? a[a.length - 1].textContent : ''; },
    users: () => [...document.querySelectorAll('[data-testid=user]')].map(b => b.textContent.trim()),
    groups: () => [...document.querySelectorAll('.thought-group')].map(g => ({
      title: g.querySelector('.title').textContent.trim(),
      open: !!g.querySelector('.content') && !g.querySelector('.content').hasAttribute('inert')
        && g.querySelector('.content').getBoundingClientRect().height > 10,
      body: g.querySelector('.content') ? g.querySelector('.content').textContent : '',
    })),
    samples: [],
  };
  const sample = () => {
    const a = answers();
    const last = a.length ? a[a.length - 1] : null;
    const code = last ? [...last.querySelectorAll('pre code')].map(c => c.textContent) : [];
    const s = {
      n: last ? last.textContent.length : 0,
      count: a.length,
      code: code.join('\\n---\\n'),
      strong: !!(last && last.querySelector('strong')),
      heading: !!(last && last.querySelector('h2')),
      items: last ? last.querySelectorAll('li').length : 0,
      groups: JSON.stringify(window.__chat.groups()),
    };
    const prev = window.__chat.samples[window.__chat.samples.length - 1];
    if (!prev || prev.n !== s.n || prev.count !== s.count || prev.groups !== s.groups || prev.code !== s.code) {
      window.__chat.samples.push(s);
    }
  };
  new MutationObserver(sample).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
})();
"""


def shot(page: Any, name: str, **kw: Any) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), **kw)
    return path


# -- fixtures ---------------------------------------------------------------------


class NotifyingFake(ReplayAPI):
    """The fake API, telling waiting tests about each request as it is logged."""

    def __init__(self) -> None:
        super().__init__(self._answer, api_key=TEST_KEY, speed=1.0)
        self.changed = threading.Condition()

    def _answer(self, req: TurnRequest) -> Script:
        deltas = synth.split_text(f"Echo: {req.user}", 3)
        return Script(events=synth.timed(synth.assistants_stream(deltas), step=0.01))

    async def handle(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        reply = await super().handle(method, path, body, headers)
        with self.changed:
            self.changed.notify_all()
        return reply

    def wait_for(self, method: str, path_contains: str, timeout: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.requests(method, path_contains), timeout), (method, path_contains)


class Apps:
    def __init__(self, replay: AppProcess, live: AppProcess, fake: NotifyingFake, record_dir: Path) -> None:
        self.replay, self.live, self.fake, self.record_dir = replay, live, fake, record_dir


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    require_browser()
    base = tmp_path_factory.mktemp("browser")
    write_ui_recordings(base / "recordings")
    fake = NotifyingFake()
    server: RunningServer = serve_in_thread(fake)
    record_dir = base / "recorded"
    replay = AppProcess({"STREAMCHAT_REPLAY": str(base / "recordings"), "STREAMCHAT_SPEED": "1"})
    live = AppProcess(
        {
            "OPENAI_API_KEY": TEST_KEY,
            "OPENAI_BASE_URL": server.url,
            "STREAMCHAT_BACKEND": "assistants",
            "STREAMCHAT_MODEL": "fake-model",
            "STREAMCHAT_RECORD": str(record_dir),
        }
    )
    try:
        replay.wait_ready()
        live.wait_ready()
        yield Apps(replay, live, fake, record_dir)
    finally:
        AppProcess.stop_all(replay, live)
        server.stop()


@pytest.fixture(scope="module")
def browser(apps: Apps) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser: Any, url: str, **context: Any) -> Any:
    ctx = browser.new_context(accept_downloads=True, viewport=context.pop("viewport", {"width": 1280, "height": 900}), **context)
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    page.add_init_script(SAMPLER)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("textarea")
    return page


@pytest.fixture
def replay_page(browser: Any, apps: Apps) -> Iterator[Any]:
    page = open_page(browser, apps.replay.url)
    yield page
    page.context.close()


@pytest.fixture
def live_page(browser: Any, apps: Apps) -> Iterator[Any]:
    page = open_page(browser, apps.live.url)
    yield page
    page.context.close()


# -- helpers ----------------------------------------------------------------------


def banner(page: Any) -> str:
    return " ".join(page.locator("#mode-banner").text_content().split())


def send(page: Any, text: str) -> None:
    page.locator("textarea").first.fill(text)
    page.locator("textarea").first.press("Enter")


def wait_answer(page: Any, contains: str, count: int | None = None) -> str:
    """Wait until the last answer bubble holds ``contains`` (and there are ``count``)."""
    page.wait_for_function(
        "([text, count]) => window.__chat.last().includes(text) && (count === null || window.__chat.answers().length === count)",
        arg=[contains, count],
    )
    return str(page.evaluate("window.__chat.last()")).strip()


def samples(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("window.__chat.samples")


def set_speed(page: Any, value: str) -> None:
    box = page.locator("#replay-speed input[type=number]")
    box.fill(value)
    box.press("Enter")
    expect = "speed instant" if value == "0" else f"speed {value}×"
    page.wait_for_function("v => document.querySelector('#mode-banner').textContent.includes(v)", arg=expect)


def pick(page: Any, name: str) -> None:
    page.locator("#recording-picker input").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_function("n => document.querySelector('#mode-banner').textContent.includes(n)", arg=name)


def examples(page: Any) -> list[str]:
    """The example prompts' texts (the multimodal chat marks a text-only one with an
    "Aa" icon, which is not part of its text)."""
    return [t.strip() for t in page.locator("button.example .example-text").all_text_contents()]


# -- replay mode ------------------------------------------------------------------


def test_page_loads_with_the_replay_banner_and_controls(replay_page: Any) -> None:
    page = replay_page
    text = banner(page)
    assert "Replay" in text and "a-long-stream" in text
    assert "synthetic" in text and "speed 1×" in text
    assert page.locator("#recording-picker input").input_value() == "a-long-stream"
    assert examples(page) == [LONG_PROMPT]
    shot(page, "01-replay-loaded")
    set_speed(page, "2")
    assert "speed 2×" in banner(page)


def test_answer_streams_in_with_markdown_and_code_rendered_while_streaming(replay_page: Any) -> None:
    page = replay_page
    send(page, LONG_PROMPT)
    # Mid-stream: a code block is on screen before the answer is complete.
    page.wait_for_function(
        "() => document.querySelector('[data-testid=bot] pre code') && !window.__chat.last().includes('The end.')"
    )
    shot(page, "02-streaming")
    final = wait_answer(page, "The end.")
    shot(page, "03-streamed")
    seen = [s for s in samples(page) if s["count"] == 1]
    lengths = [s["n"] for s in seen]
    complete = len(final)
    partial = [s for s in seen if 0 < s["n"] < complete]
    # It grew through many lengths, never shrinking, before it was complete.
    assert len(set(lengths)) >= 10, lengths
    assert lengths == sorted(lengths)
    # Markdown and code were rendered before the end, indentation kept.
    assert any(s["heading"] and s["strong"] and s["items"] >= 2 for s in partial)
    indented = [s for s in partial if "\n    for line in lines:" in s["code"]]
    assert indented, [s["code"] for s in partial][-3:]
    final_code = page.evaluate("document.querySelector('[data-testid=bot] pre code').textContent")
    assert '        if line.startswith("data: "):\n            yield line[6:]' in final_code


def test_stop_halts_the_stream_and_keeps_the_partial_text_marked(replay_page: Any) -> None:
    page = replay_page
    send(page, LONG_PROMPT)
    page.wait_for_function("() => window.__chat.last().length > 120")
    page.locator("button.stop-button").click()
    page.wait_for_function("() => document.querySelector('.message-wrap').textContent.includes('Stopped')")
    partial = page.evaluate("window.__chat.last()")
    shot(page, "04-stopped")
    assert "The end." not in partial
    # The same prompt again (the recording's second turn) takes as long as the first
    # would have: when it is done, the stopped answer has not grown by a character.
    send(page, LONG_PROMPT)
    wait_answer(page, "The end.", count=2)
    page.locator(".thought-group").first.scroll_into_view_if_needed()
    shot(page, "05-after-stop")
    answers = page.evaluate("window.__chat.answers()")
    assert answers[0] == partial
    assert answers[1].startswith("Once more")
    assert page.evaluate("window.__chat.users()") == [LONG_PROMPT, LONG_PROMPT]
    titles = [g["title"] for g in page.evaluate("window.__chat.groups()")]
    assert any("Stopped" in t for t in titles), titles


def test_tool_bubble_opens_while_running_and_closes_when_done(replay_page: Any) -> None:
    page = replay_page
    pick(page, "b-tool-call")
    assert examples(page) == [TOOL_PROMPT]
    send(page, TOOL_PROMPT)
    # The running bubble lasts about a second (the recorded tool time): a loaded machine
    # can miss it by polling, so it is read from the page's mutation samples below.
    wait_answer(page, TOOL_ANSWER)
    page.wait_for_function("() => window.__chat.groups().every(g => !g.open)")
    shot(page, "07-tool-done")
    groups = page.evaluate("window.__chat.groups()")
    assert len(groups) == 1 and groups[0]["title"].startswith("🛠️ Used tool get_weather") and not groups[0]["open"]
    # Seen in between: the same bubble open, showing the arguments, while the tool ran.
    seen = [g for s in samples(page) for g in json.loads(s["groups"])]
    running = [i for i, g in enumerate(seen) if g["title"].startswith("🛠️ Using tool") and g["open"]]
    assert running and '"city": "Paris"' in seen[running[-1]]["body"]
    done = [i for i, g in enumerate(seen) if g["title"].startswith("🛠️ Used tool")]
    assert done and running[0] < done[0]


def test_picking_a_recording_resets_the_chat_and_new_chat_starts_fresh(replay_page: Any) -> None:
    page = replay_page
    set_speed(page, "0")
    send(page, LONG_PROMPT)
    wait_answer(page, "The end.")
    pick(page, "c-which-turn")
    page.wait_for_function("() => window.__chat.answers().length === 0 && window.__chat.users().length === 0")
    assert examples(page) == [TURN_PROMPT]
    assert "c-which-turn" in banner(page)
    shot(page, "08-picked")
    send(page, TURN_PROMPT)
    assert wait_answer(page, "turn.", count=1) == "This is the first turn."
    send(page, TURN_PROMPT)
    assert wait_answer(page, "turn.", count=2) == "This is the second turn."
    page.locator("button[aria-label=Clear]").click()
    page.wait_for_function("() => window.__chat.answers().length === 0")
    send(page, TURN_PROMPT)
    assert wait_answer(page, "turn.", count=1) == "This is the first turn."
    shot(page, "09-new-chat")


def test_phone_width_renders_without_sideways_scrolling(browser: Any, apps: Apps) -> None:
    page = open_page(browser, apps.replay.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        set_speed(page, "0")
        send(page, LONG_PROMPT)
        wait_answer(page, "The end.")
        width = page.evaluate("document.documentElement.scrollWidth")
        box = page.locator("[data-testid=bot]").last.bounding_box()
        shot(page, "10-phone")
        assert width <= 390
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    finally:
        page.context.close()


def test_phone_width_picker_shows_the_longest_recording_name_whole(browser: Any, apps: Apps) -> None:
    """At 390 px the picker takes its own row: the longest bundled name fits before the arrow."""
    page = open_page(browser, apps.replay.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        names = [p.stem for p in (Path(__file__).resolve().parent.parent / "recordings").glob("*.jsonl")]
        room, *needed = page.evaluate(
            """(names) => {
                const input = document.querySelector('#recording-picker input');
                const style = getComputedStyle(input);
                const ctx = document.createElement('canvas').getContext('2d');
                ctx.font = style.font;
                const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
                return [room, ...names.map((n) => ctx.measureText(n).width)];
            }""",
            names,
        )
        shot(page, "10b-phone-picker")
        assert max(needed) <= room, (room, max(needed))
    finally:
        page.context.close()


def test_after_each_replayed_turn_the_banner_offers_the_next_prompt(replay_page: Any) -> None:
    page = replay_page
    set_speed(page, "0")
    pick(page, "c-which-turn")
    send(page, TURN_PROMPT)
    wait_answer(page, "turn.", count=1)
    page.wait_for_function(
        "p => document.querySelector('#mode-banner').textContent.includes(p)", arg=f"next recorded prompt: “{TURN_PROMPT}”"
    )
    send(page, TURN_PROMPT)
    wait_answer(page, "turn.", count=2)
    page.wait_for_function("() => document.querySelector('#mode-banner').textContent.includes('last turn')")
    shot(page, "08b-next-prompt")


# -- live mode --------------------------------------------------------------------


def download(page: Any) -> str:
    with page.expect_download() as info:
        page.locator("#download-recording").click()
    return Path(info.value.path()).read_text(encoding="utf-8")


def wait_download_label(page: Any, text: str) -> None:
    """The button's label counts the turns of the file it offers: it changes once the
    server has made a fresh copy."""
    page.wait_for_function("t => document.querySelector('#download-recording')?.textContent.includes(t)", arg=text)


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_live_banner_record_toggle_download_and_new_chat(live_page: Any, apps: Apps) -> None:
    page, fake = live_page, apps.fake
    text = banner(page)
    assert "Live" in text and "assistants" in text and "fake-model" in text and "recording this chat" in text
    assert "server 127.0.0.1:" in text  # the fake server it talks to, not the default one
    toggle = page.locator("#record-toggle input")
    assert toggle.is_checked()

    send(page, "first message")
    wait_answer(page, "Echo: first message")
    wait_download_label(page, "(1 turn)")
    shot(page, "11-live")
    first = download(page)

    toggle.uncheck()
    page.wait_for_function("() => document.querySelector('#mode-banner').textContent.includes('paused')")
    send(page, "second message")
    wait_answer(page, "Echo: second message")
    toggle.check()
    page.wait_for_function("() => document.querySelector('#mode-banner').textContent.includes('recording this chat')")
    send(page, "third message")
    wait_answer(page, "Echo: third message")
    wait_download_label(page, "(2 turns)")
    second = download(page)

    users = [json.loads(line)["user"] for line in second.splitlines() if '"kind":"turn"' in line]
    assert json.loads(first.splitlines()[0])["kind"] == "header"
    assert "first message" in first
    assert users == ["first message", "third message"]
    assert TEST_KEY not in second
    files = list(apps.record_dir.iterdir())
    assert len(files) == 1 and files[0].read_text(encoding="utf-8") == second

    # Only the copy offered to this session is served; the folder itself is not.
    assert status(f"{apps.live.url}/gradio_api/file={files[0]}") != 200
    assert status(f"{apps.live.url}/gradio_api/file={Path(__file__).resolve().parent.parent / 'app.py'}") != 200

    # New chat: the old thread is deleted, the next message opens a new one.
    threads = fake.live_objects("thread")
    assert len(threads) == 1
    page.locator("button[aria-label=Clear]").click()
    fake.wait_for("DELETE", f"/threads/{threads[0]}")
    assert fake.live_objects("thread") == []
    send(page, "after new chat")
    wait_answer(page, "Echo: after new chat", count=1)
    assert len(fake.live_objects("thread")) == 1 and fake.live_objects("thread") != threads
    shot(page, "12-live-new-chat")
