"""Measurements 1-3 in headless Chromium: a long reply (as fast as possible, and paced),
time to first token, and Stop.

Times come from two clocks on one machine: the fake server stamps what it sends with
``time.time()``; the page stamps what it shows with ``performance.timeOrigin +
performance.now()`` (both wall clock; their offset is measured before each run and
taken out). "Shown" is the first animation frame after a mutation put the mark in the
chat log: the frame that paints it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from playwright.sync_api import Browser, Page, Playwright

from .apps import AppProcess, Target, browser_cpu, cpu_seconds
from .fake import BenchFake, bench_message, marks

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    # Loopback only: every host name fails to resolve; 127.0.0.1 needs no resolving.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

_WATCH = """
() => {
  if (window.__bench) return;
  const now = () => performance.timeOrigin + performance.now();
  const b = window.__bench = {want: [], seen: {}, dom: {}, enter: null, stop: null, mutations: 0};
  const check = () => {
    if (!b.want.length) return;
    const log = document.querySelector('[role=log]');
    if (!log) return;
    const text = log.textContent;
    const t = now();
    const found = b.want.filter(m => text.includes(m));
    if (!found.length) return;
    b.want = b.want.filter(m => !found.includes(m));
    for (const m of found) b.dom[m] = t;
    requestAnimationFrame(() => { const f = now(); for (const m of found) b.seen[m] = f; });
  };
  new MutationObserver(() => { b.mutations++; check(); })
    .observe(document.body, {subtree: true, childList: true, characterData: true});
  document.addEventListener('keydown', e => { if (e.key === 'Enter') b.enter = now(); }, true);
  document.addEventListener('pointerdown', e => {
    if (e.target.closest && e.target.closest('[data-testid=stop-button]')) b.stop = now();
  }, true);
}
"""


def launch(pw: Playwright) -> Browser:
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), of values that may be few."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


class ChatPage:
    """One tab on one app: type a benchmark message, and read back when marks showed."""

    def __init__(self, browser: Browser, app: AppProcess, target: Target, fake: BenchFake) -> None:
        self.app, self.target, self.fake = app, target, fake
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page: Page = self.context.new_page()
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("Performance.enable")
        self.offset = 0.0

    def open(self) -> None:
        """Load the app afresh (a new Gradio session, an empty chat)."""
        self.page.goto(self.app.url, wait_until="domcontentloaded")
        self.page.locator("textarea").first.wait_for(state="visible", timeout=60_000)
        self.page.evaluate(_WATCH)
        self.page.wait_for_timeout(500)  # let the client finish its own start-up calls

    def close(self) -> None:
        self.context.close()

    def calibrate(self) -> float:
        """Seconds to subtract from a page time to get ``time.time()`` (best of 5)."""
        best: tuple[float, float] | None = None
        for _ in range(5):
            before = time.time()
            page_now = self.page.evaluate("performance.timeOrigin + performance.now()") / 1000
            after = time.time()
            if best is None or after - before < best[0]:
                best = (after - before, page_now - (before + after) / 2)
        assert best is not None
        self.offset = best[1]
        return self.offset

    def _t(self, page_ms: float | None) -> float | None:
        return None if page_ms is None else page_ms / 1000 - self.offset

    def send(self, message: str, want: list[str]) -> None:
        self.calibrate()
        self.page.evaluate("w => { const b = window.__bench; b.want = w; b.enter = null; b.stop = null; }", want)
        box = self.page.locator("textarea").first
        box.fill(message)
        box.press("Enter")

    def wait_shown(self, mark: str, timeout: float) -> float | None:
        """``time.time()`` at which ``mark`` was shown, or None after ``timeout`` s."""
        try:
            self.page.wait_for_function("m => window.__bench.seen[m] !== undefined", arg=mark, polling=50, timeout=timeout * 1000)
        except Exception:
            return None
        return self._t(self.page.evaluate("m => window.__bench.seen[m]", mark))

    def enter_time(self) -> float | None:
        return self._t(self.page.evaluate("window.__bench.enter"))

    def stop_time(self) -> float | None:
        return self._t(self.page.evaluate("window.__bench.stop"))

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until the turn is over: no Stop button, the textbox editable again."""
        deadline = time.time() + timeout
        stop = self.page.locator("[data-testid=stop-button]")
        while time.time() < deadline:
            if not stop.is_visible() and self.page.locator("textarea").first.is_editable():
                break
            time.sleep(0.05)
        self.page.wait_for_timeout(150)

    def task_seconds(self) -> float:
        metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return float(metrics.get("TaskDuration", 0.0))

    def has_stop_button(self) -> bool:
        return self.page.locator("[data-testid=stop-button]").is_visible()


@contextmanager
def opened(browser: Browser, app: AppProcess, target: Target, fake: BenchFake) -> Iterator[ChatPage]:
    page = ChatPage(browser, app, target, fake)
    try:
        page.open()
        yield page
    finally:
        page.close()


class Runs:
    """Fresh run ids, so every stream's stamps stay apart."""

    def __init__(self, prefix: int) -> None:
        self.n = prefix * 1000

    def next(self) -> str:
        self.n += 1
        return str(self.n)


@dataclass
class Started:
    """A long reply on its way: its run id and the counters read before it."""

    rid: str
    cpu: float
    task: float
    server: float


def start_long_reply(page: ChatPage, runs: Runs, *, n: int, rate: float) -> Started:
    rid = runs.next()
    first, last = marks(rid)
    started = Started(rid, browser_cpu(), page.task_seconds(), cpu_seconds(page.app.proc.pid))
    page.send(bench_message(rid, n=n, rate=rate), [first, last])
    return started


def finish_long_reply(page: ChatPage, started: Started, *, timeout: float) -> dict[str, Any]:
    """Wait until the reply is fully shown. CPU figures cover the whole browser (every
    Chromium process) and the app's process, from before the message to the end."""
    _first, last = marks(started.rid)
    shown = page.wait_shown(last, timeout)
    cpu, task, server = browser_cpu(), page.task_seconds(), cpu_seconds(page.app.proc.pid)
    enter = page.enter_time()
    stamps = page.fake.stamp(started.rid)
    out: dict[str, Any] = {
        "complete": shown is not None,
        "timeout_s": timeout,
        "browser_cpu_s": cpu - started.cpu,
        "renderer_task_s": task - started.task,
        "server_cpu_s": server - started.server,
        "server_stream_s": _diff(stamps.last_delta, stamps.first_delta),
        "wall_s": _diff(shown, enter),
        "lag_end_s": _diff(shown, stamps.last_delta),
    }
    if shown is None and enter is not None:
        out["wall_s_at_least"] = time.time() - enter
    return out


def long_reply(page: ChatPage, runs: Runs, *, n: int, rate: float, timeout: float) -> dict[str, Any]:
    """Measurement 1: an ``n``-delta reply at ``rate`` deltas/s (0: as fast as possible)."""
    started = start_long_reply(page, runs, n=n, rate=rate)
    return {"n": n, "rate": rate, **finish_long_reply(page, started, timeout=timeout)}


def first_token(page: ChatPage, runs: Runs, *, count: int) -> dict[str, Any]:
    """Measurement 2: server sends the first delta → the browser shows it. The next
    delta follows 170 ms later, so the first one is shown on its own (as when a model
    streams), not together with the end of the turn."""
    delays: list[float] = []
    for _ in range(count):
        rid = runs.next()
        first, last = marks(rid)
        page.send(bench_message(rid, n=3, first=0.05, rate=6), [first, last])
        shown = page.wait_shown(first, 15)
        page.wait_shown(last, 15)
        sent = page.fake.stamp(rid).first_delta
        if shown is not None and sent is not None:
            delays.append(shown - sent)
        page.wait_idle()
    return {"runs": count, "ok": len(delays), "p50_s": pct(delays, 50), "p95_s": pct(delays, 95), "all_s": delays}


def stop(page: ChatPage, runs: Runs, *, case: str, count: int, wait: float) -> dict[str, Any]:
    """Measurement 3: press Stop → the fake server sees the connection closed.

    ``silent``: the upstream stalls after 3 deltas; ``streaming``: 100 deltas/s."""
    delays: list[float] = []
    not_closed = never_showed = 0
    for _ in range(count):
        rid = runs.next()
        first, _last = marks(rid)
        params: dict[str, Any] = {"n": 4000, "rate": 100}
        if case == "silent":
            params = {"n": 50, "rate": 100, "stall": 60, "stall_after": 3}
        page.send(bench_message(rid, **params), [first])
        if page.wait_shown(first, 15) is None:
            never_showed += 1
            continue
        time.sleep(0.6)  # silent: well into the stall; streaming: mid-stream
        button = page.page.locator("[data-testid=stop-button]")
        if not button.is_visible():
            return {"case": case, "stop_button": False}
        button.click()
        pressed = page.stop_time() or time.time()
        stamps = page.fake.stamp(rid)
        deadline = time.time() + wait
        while stamps.disconnected is None and time.time() < deadline:
            time.sleep(0.005)
        if stamps.disconnected is None:
            not_closed += 1
        else:
            delays.append(stamps.disconnected - pressed)
        page.wait_idle()
    return {
        "case": case,
        "stop_button": True,
        "runs": count,
        "closed": len(delays),
        "never_showed": never_showed,
        "not_closed_within_s": wait if not_closed else None,
        "p50_s": pct(delays, 50) if delays else None,
        "max_s": max(delays) if delays else None,
        "all_s": delays,
    }


def tab_closed(page: ChatPage, runs: Runs, *, wait: float) -> dict[str, Any]:
    """Close the tab mid-stream (100 deltas/s for 10 s) → the fake server sees the
    upstream closed? (The stream ends by itself after ``wait``, so a peer that never
    closes it is not left busy for long.)"""
    rid = runs.next()
    first, _last = marks(rid)
    page.send(bench_message(rid, n=1000, rate=100), [first])
    if page.wait_shown(first, 15) is None:
        page.close()
        return {"closed": False, "error": "the reply never showed"}
    time.sleep(0.6)
    closed_at = time.time()
    page.close()
    stamps = page.fake.stamp(rid)
    deadline = time.time() + wait
    while stamps.disconnected is None and time.time() < deadline:
        time.sleep(0.005)
    if stamps.disconnected is None:
        return {"closed": False, "not_closed_within_s": wait}
    return {"closed": True, "delay_s": stamps.disconnected - closed_at}


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
