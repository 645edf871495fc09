"""Demo mode in a real browser (headless Debian chromium, pip's playwright): Play types
and answers a three-turn recording in order at its recorded pace, Pause holds the page
still and Resume completes it, Stop leaves the partial conversation, typing takes over,
a chapter plays from its turn, and ``?autoplay=1&recording=NAME`` plays without a click.

One app process (replay mode, speed 1) and one browser serve the module. An init script
keeps every distinct state of the chat and of the message box, stamped with the page's
clock, so timing is read from what the page showed (lower bounds only).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, AppProcess, require_browser
from test_browser import SAMPLER, shot

from streamchat.testing import synth

pytestmark = pytest.mark.browser

WAIT_MS = 30_000
PROMPTS = ["Tell me about tides.", "Why twice a day?", "And spring tides?"]
ANSWERS = [
    "Tides are the sea rising and falling, pulled by the Moon and the Sun. " * 2,
    "The Earth turns under two bulges of water, one facing the Moon and one opposite. " * 2,
    "Spring tides come when the Sun and Moon line up, at new and full moon. " * 2,
]
PER_DELTA = 0.05
OTHER = ["Say hello.", "Say goodbye."]

# Installed before any page script, after SAMPLER: each distinct state of the chat
# (user and answer bubbles) and of the message box, with performance.now().
RECORDER = """
(() => {
  window.__demo = {states: [], drafts: []};
  const snap = () => {
    const c = window.__chat;
    if (!c) return;
    const s = JSON.stringify([c.users(), c.answers()]);
    const states = window.__demo.states;
    if (!states.length || states[states.length - 1].s !== s) states.push({t: performance.now(), s});
    const box = document.querySelector('textarea');
    const v = box ? box.value : '';
    const drafts = window.__demo.drafts;
    if (!drafts.length || drafts[drafts.length - 1] !== v) drafts.push(v);
  };
  new MutationObserver(snap).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
  const tick = () => { snap(); requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
})();
"""


def answer_turn(user: str, answer: str, seed: int) -> tuple[synth.SynthTurn, float]:
    events = synth.paced(synth.responses_stream(synth.split_text(answer, 8)), first_token=0.2, per_delta=PER_DELTA, seed=seed)
    texts = [t for t, raw in events if isinstance(raw.data, dict) and raw.data.get("type") == "response.output_text.delta"]
    return synth.SynthTurn(user, [events]), texts[-1] - texts[0]


def write_recordings(folder: Path) -> list[float]:
    """``d-three`` (three paced turns, chapters at turns 2 and 3) and ``e-other``;
    returns the recorded time from each answer's first to its last text delta."""
    folder.mkdir(parents=True, exist_ok=True)
    made = [answer_turn(p, a, n) for n, (p, a) in enumerate(zip(PROMPTS, ANSWERS, strict=True))]
    lines = synth.recording_lines("responses", [t for t, _ in made], title="Three turns")
    markers = [{"kind": "marker", "turn": 1, "label": "Twice a day"}, {"kind": "marker", "turn": 2, "label": "Spring"}]
    (folder / "d-three.jsonl").write_text(synth.dump_lines([*lines, *markers]), encoding="utf-8")
    other = [answer_turn(p, f"{p} Done.", 9)[0] for p in OTHER]
    (folder / "e-other.jsonl").write_text(
        synth.dump_lines(synth.recording_lines("responses", other, title="Another")), encoding="utf-8"
    )
    return [span for _, span in made]


class App:
    def __init__(self, process: AppProcess, spans: list[float]) -> None:
        self.process, self.spans = process, spans


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    require_browser()
    folder = tmp_path_factory.mktemp("demo") / "recordings"
    spans = write_recordings(folder)
    process = AppProcess({"STREAMCHAT_REPLAY": str(folder), "STREAMCHAT_SPEED": "1", "STREAMCHAT_MAX_GAP": "1"})
    try:
        process.wait_ready()
        yield App(process, spans)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def page(app: App) -> Iterator[Any]:
    """One browser and one page for the module; each test opens the address it needs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        tab = context.new_page()
        tab.add_init_script(SAMPLER)
        tab.add_init_script(RECORDER)
        yield tab
        browser.close()


def open_app(page: Any, app: App, query: str = "") -> None:
    page.goto(app.process.url + "/" + query, wait_until="domcontentloaded")
    page.wait_for_selector("#demo-play")
    page.wait_for_selector("textarea")
    page.wait_for_function("() => (document.querySelector('#recording-picker input')?.value || '') !== ''")


def status(page: Any) -> str:
    return " ".join((page.locator("#demo-status").text_content() or "").split())


def wait_status(page: Any, text: str) -> None:
    page.wait_for_function("t => (document.querySelector('#demo-status')?.textContent || '').includes(t)", arg=text)


def chat(page: Any) -> tuple[list[str], list[str]]:
    return page.evaluate("window.__chat.users()"), [a.strip() for a in page.evaluate("window.__chat.answers()")]


def states(page: Any) -> list[tuple[float, list[str], list[str]]]:
    import json

    return [(s["t"] / 1000, *json.loads(s["s"])) for s in page.evaluate("window.__demo.states")]


def test_play_types_sends_and_answers_every_turn_in_order_at_the_recorded_pace(page: Any, app: App) -> None:
    open_app(page, app)
    assert page.locator("#recording-picker input").input_value() == "d-three"
    page.locator("#demo-play").click()
    page.wait_for_function("() => document.querySelector('textarea').value.length > 3")
    shot(page, "demo-01-typing")
    wait_status(page, "Demo done")
    shot(page, "demo-02-done")
    users, answers = chat(page)
    assert users == PROMPTS
    assert answers == [a.strip() for a in ANSWERS]
    # Each prompt was typed into the message box a few characters at a time.
    drafts = page.evaluate("window.__demo.drafts")
    for prompt in PROMPTS:
        growing = [d for d in drafts if d and prompt.startswith(d)]
        assert len(growing) >= 5 and growing[-1] == prompt, growing
    # In order, each answer after its prompt, and taking (at least) its recorded time:
    # from its first text on the page to its whole text, no faster than recorded.
    seen = states(page)
    for n, (prompt, answer, span) in enumerate(zip(PROMPTS, ANSWERS, app.spans, strict=True)):
        asked, shown = next((t, u[n]) for t, u, _ in seen if len(u) > n and u[n])
        assert shown == prompt
        started = next(t for t, _, a in seen if len(a) > n and a[n].strip())
        whole = next(t for t, _, a in seen if len(a) > n and a[n].strip() == answer.strip())
        assert asked <= started < whole
        assert whole - started >= 0.8 * span, (n, whole - started, span)
        if n:
            assert asked > next(t for t, _, a in seen if len(a) >= n and a[n - 1].strip() == ANSWERS[n - 1].strip())


def test_pause_holds_the_page_still_and_resume_completes_it(page: Any, app: App) -> None:
    open_app(page, app)
    page.locator("#demo-play").click()
    page.wait_for_function("() => window.__chat.answers().length === 2 && window.__chat.last().length > 20")
    page.locator("#demo-pause").click()
    wait_status(page, "paused")
    assert page.locator("#demo-pause").text_content().strip().endswith("Resume")
    page.wait_for_timeout(300)  # what was on its way when Pause came has arrived
    held = chat(page)
    count = len(page.evaluate("window.__demo.states"))
    page.wait_for_timeout(1000)  # the hold itself is what is tested: a second of it
    assert chat(page) == held and len(page.evaluate("window.__demo.states")) == count
    assert held[1][1] != ANSWERS[1].strip()
    shot(page, "demo-03-paused")
    page.locator("#demo-pause").click()
    wait_status(page, "Demo done")
    users, answers = chat(page)
    assert users == PROMPTS and answers == [a.strip() for a in ANSWERS]
    assert page.locator("#demo-pause").text_content().strip().endswith("Pause")


def test_stop_leaves_the_partial_conversation_and_typing_takes_over(page: Any, app: App) -> None:
    open_app(page, app)
    page.locator("#demo-play").click()
    page.wait_for_function("() => window.__chat.answers().length === 2 && window.__chat.last().length > 20")
    page.locator("#demo-stop").click()
    wait_status(page, "stopped at turn 2")
    page.wait_for_function("() => document.querySelector('.message-wrap').textContent.includes('Stopped')")
    users, answers = chat(page)
    shot(page, "demo-04-stopped")
    assert users == PROMPTS[:2]
    assert answers[0] == ANSWERS[0].strip() and ANSWERS[1].strip() not in answers[1]
    # The conversation goes on by matching: the third prompt, typed, gets its answer.
    box = page.locator("textarea").first
    box.fill(PROMPTS[2])
    box.press("Enter")
    page.wait_for_function("a => window.__chat.last().includes(a)", arg=ANSWERS[2].strip())
    assert chat(page)[0] == PROMPTS

    # Typing while a demo plays stops it and hands the chat over.
    page.locator("#demo-play").click()
    page.wait_for_function("() => window.__chat.answers().length === 1 && window.__chat.last().length > 20")
    box.press_sequentially("W")  # a key typed: the demo hands over
    wait_status(page, "Demo stopped")
    box.fill(PROMPTS[1])
    box.press("Enter")
    page.wait_for_function("a => window.__chat.last().includes(a)", arg=ANSWERS[1].strip())
    users, answers = chat(page)
    assert users == PROMPTS[:2] and answers[1] == ANSWERS[1].strip()


def test_a_chapter_plays_from_its_turn(page: Any, app: App) -> None:
    open_app(page, app)
    page.locator("#replay-speed input[type=number]").fill("0")
    page.locator("#replay-speed input[type=number]").press("Enter")
    page.wait_for_function("() => document.querySelector('#mode-banner').textContent.includes('instant')")
    page.locator("#demo-chapters input").click()
    page.get_by_role("option", name="Turn 3 · Spring").click()
    wait_status(page, "Demo done")
    users, answers = chat(page)
    assert users == PROMPTS and answers == [a.strip() for a in ANSWERS]
    # Turns 1 and 2 were there at once: the third prompt is the only one typed.
    drafts = [d for d in page.evaluate("window.__demo.drafts") if d]
    assert not [d for d in drafts if PROMPTS[0].startswith(d) or PROMPTS[1].startswith(d)]


def test_autoplay_from_the_address_plays_without_a_click(page: Any, app: App) -> None:
    open_app(page, app, "?autoplay=1&recording=e-other&speed=0")
    wait_status(page, "Demo done")
    users, answers = chat(page)
    assert users == OTHER and answers == [f"{p} Done." for p in OTHER]
    assert page.locator("#recording-picker input").input_value() == "e-other"
    assert "e-other" in (page.locator("#mode-banner").text_content() or "")
    shot(page, "demo-05-autoplay")
    # Without autoplay in the address (and no --autoplay), nothing plays by itself.
    open_app(page, app)
    page.wait_for_function("() => !!document.querySelector('#demo-status')")
    assert chat(page) == ([], []) and "Demo" not in status(page)  # (Gradio's own timer may show there)
