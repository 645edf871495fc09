"""How much later the first and the last delta reach a client through the recording
proxy than directly from the server (issue 12: a few tens of milliseconds at most).

    python -m bench.proxy [--runs 20] [--deltas 200] [--step 0.01] [--node-modules DIR]

A fake server on 127.0.0.1 streams a Chat Completions answer of ``--deltas`` deltas, one
every ``--step`` seconds (recorded pace); each run asks it once directly and once through
the proxy (which records every run to a temporary folder), with the Python SDK and, when
``--node-modules`` holds the ``openai`` npm package (``npm install openai`` there) and
``node`` is on the PATH, with the Node SDK. Times are measured by the client from sending
the request; the text must be identical both ways. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

from streamchat.proxy import Proxy, Recorder, serve_app
from streamchat.recording import load_recording
from streamchat.replay_server import load_source
from streamchat.replayapi import ReplayAPI, Script, TurnRequest
from streamchat.serve import serve_in_thread
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript, FaultyAPI

NODE_SCRIPT = r"""
const OpenAI = require("openai");
const [baseURL, prompt] = process.argv.slice(2);
(async () => {
  const client = new OpenAI({ baseURL, apiKey: "bench-key", maxRetries: 0 });
  const t0 = performance.now();
  const stream = await client.chat.completions.create({ model: "bench", messages: [{ role: "user", content: prompt }], stream: true });
  let first = null, last = null, text = "";
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta?.content;
    if (delta) { const now = performance.now(); if (first === null) first = now; last = now; text += delta; }
  }
  console.log(JSON.stringify({ first: (first - t0) / 1000, last: (last - t0) / 1000, text }));
})();
"""


def python_run(url: str, prompt: str) -> tuple[float, float, str]:
    client = openai.OpenAI(base_url=url, api_key="bench-key", max_retries=0)
    t0 = time.perf_counter()
    stream = client.chat.completions.create(model="bench", messages=[{"role": "user", "content": prompt}], stream=True)
    first = last = 0.0
    text = ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter() - t0
            first = first or last
            text += chunk.choices[0].delta.content
    client.close()
    return first, last, text


def node_run(script: Path, url: str, prompt: str, modules: Path) -> tuple[float, float, str]:
    out = subprocess.run(
        ["node", str(script), url, prompt], capture_output=True, text=True, check=True, env={"NODE_PATH": str(modules)}
    )
    data = json.loads(out.stdout)
    return data["first"], data["last"], data["text"]


def summary(label: str, direct: list[tuple[float, float, str]], proxied: list[tuple[float, float, str]]) -> None:
    same = all(d[2] == p[2] for d, p in zip(direct, proxied, strict=True))
    for i, name in ((0, "first delta"), (1, "last delta")):
        d = [float(r[i]) * 1000 for r in direct]
        p = [float(r[i]) * 1000 for r in proxied]
        extra = sorted(b - a for a, b in zip(d, p, strict=True))
        p95 = extra[min(len(extra) - 1, round(0.95 * (len(extra) - 1)))]
        print(
            f"{label:7} {name:11}  direct median {statistics.median(d):8.1f} ms   proxy median {statistics.median(p):8.1f} ms"
            f"   added: median {statistics.median(extra):6.1f} ms, p95 {p95:6.1f} ms, max {extra[-1]:6.1f} ms"
        )
    print(f"{label:7} identical text: {same} ({len(direct)} runs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--step", type=float, default=0.01, help="seconds between deltas (default 0.01)")
    parser.add_argument("--node-modules", type=Path, default=None, help="a node_modules folder holding the openai package")
    args = parser.parse_args()

    words = [f"w{i} 😀 " if i % 7 == 0 else f"word{i} " for i in range(args.deltas)]

    def source(request: TurnRequest) -> Script:
        return FaultScript(events=synth.timed(synth.chat_stream(words), step=args.step))

    server = serve_in_thread(FaultyAPI(source, speed=1.0))
    folder = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    recorder = Recorder(folder)
    proxy = serve_app(Proxy(server.url, recorder))
    print(
        f"{args.runs} runs, {args.deltas} deltas, one every {args.step * 1000:g} ms (stream of {args.deltas * args.step:.2f} s)"
    )
    try:
        script = folder / "bench.cjs"
        script.write_text(NODE_SCRIPT)
        clients = [("python", python_run)]
        if args.node_modules and shutil.which("node") and (args.node_modules / "openai").is_dir():
            clients.append(("node", lambda url, prompt: node_run(script, url, prompt, args.node_modules)))
        for label, run in clients:
            run(server.url, "warm-up")
            run(proxy.url, "warm-up")
            direct, proxied = [], []
            for n in range(args.runs):
                direct.append(run(server.url, f"{label} run {n}"))
                proxied.append(run(proxy.url, f"{label} run {n}"))
            summary(label, direct, proxied)
        if not args.node_modules:
            print("node    skipped: pass --node-modules DIR (a folder where `npm install openai` was run)")
        proxy.stop()
        recorder.close()
        paths = recorder.paths
        turns = sum(len(load_recording(p).turns) for p in paths)
        source_, _ = load_source(folder)
        replayer = serve_in_thread(ReplayAPI(source_))
        try:
            replayed = python_run(replayer.url, "python run 0")[2]
        finally:
            replayer.stop()
        print(
            f"recorded {turns} turns in {len(paths)} files; replay of 'python run 0' gives the same text: {replayed == ''.join(words)}"
        )
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
