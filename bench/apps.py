"""The Gradio apps under test, each in its own process: this app (one per backend) and
the peers. Also the /proc readings the benchmark takes of processes (CPU time, RSS)."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_KEY = "bench-placeholder"
"""The fake server accepts anything; this only has to be non-empty."""
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Target:
    """An app the browser benchmarks drive."""

    name: str
    script: str
    env: dict[str, str] = field(default_factory=dict)
    multimodal: bool = False
    """``gr.load_chat`` uses a MultimodalTextbox."""


APP_TARGETS = tuple(Target(f"app/{api}", "app.py", {"STREAMCHAT_BACKEND": api}) for api in ("responses", "assistants", "chat"))
PEER_TARGETS = (
    Target("gr.load_chat", "bench/peers/load_chat.py", multimodal=True),
    Target("llm_openai demo", "bench/peers/llm_openai_demo.py"),
)
TARGETS = {t.name: t for t in (*APP_TARGETS, *PEER_TARGETS)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    """Loopback only, no telemetry: the environment every app process gets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "STREAMCHAT_", "GRADIO_"))}
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    return env


_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()


class AppProcess:
    """A Gradio app launched as ``python <script>`` (or ``-m <module>``), ready once its page answers."""

    def __init__(self, script: str, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        full = {**base_env(), **env, "GRADIO_SERVER_PORT": str(self.port)}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, *script.split()],
            cwd=ROOT,
            env=full,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.startup: float | None = None
        _LIVE.add(self.proc)

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Seconds from spawn until the page answers 200."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args!r} exited with {self.proc.returncode}; see {self._log.name}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        self.startup = time.perf_counter() - self.started
                        return self.startup
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{self.proc.args!r} did not answer in {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _LIVE.discard(self.proc)
        self._log.close()


def start_targets(targets: list[Target], fake_url: str, log_dir: Path) -> dict[str, AppProcess]:
    """Spawn every target at once, then wait for each; on failure stop them all."""
    apps: dict[str, AppProcess] = {}
    try:
        for target in targets:
            env = {"OPENAI_API_KEY": BENCH_KEY, "OPENAI_BASE_URL": fake_url, **target.env}
            apps[target.name] = AppProcess(target.script, env, log_dir / f"{target.name.replace('/', '-').replace(' ', '-')}.log")
        for app in apps.values():
            app.wait_ready()
    except BaseException:
        for app in apps.values():
            app.stop()
        raise
    return apps


# -- /proc ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def browser_pids() -> list[int]:
    """The Chromium processes this benchmark started (below this process)."""
    out = []
    for pid in descendants(os.getpid()):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if "chrom" in name:
            out.append(pid)
    return out


def browser_cpu() -> float:
    return sum(cpu_seconds(pid) for pid in browser_pids())


def startup(log_dir: Path, runs: int = 3) -> dict[str, Any]:
    """Seconds from ``python <script>`` to the first page served: this app as it starts
    bare (no key: replay of the bundled recordings) beside a hello-world ChatInterface,
    alternated so that load on the machine falls on both alike."""
    scripts = {"python app.py": "app.py", "bare gr.ChatInterface": "bench/peers/hello.py"}
    times: dict[str, list[float]] = {name: [] for name in scripts}
    for i in range(runs):
        for name, script in scripts.items():
            app = AppProcess(script, {}, log_dir / f"startup-{Path(script).stem}-{i}.log")
            try:
                times[name].append(app.wait_ready())
            finally:
                app.stop()
    out: dict[str, Any] = {name: {"median_s": statistics.median(t), "all_s": t} for name, t in times.items()}
    out["ratio"] = out["python app.py"]["median_s"] / out["bare gr.ChatInterface"]["median_s"]
    return out
