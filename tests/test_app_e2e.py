"""End to end: the real `app.py` demo, launched on 127.0.0.1 and driven by
`gradio_client`, streams a chat answer from the fake server."""

from __future__ import annotations

import importlib
import socket
import sys

import pytest
from conftest import TEST_KEY, Fake
from gradio_client import Client

from streamchat.replayapi import Script, TurnRequest
from streamchat.testing import synth

ANSWER = "ストリーミングで届く答えです。Streaming works, delta by delta! 🚀"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_launched_app_streams_chat_through_gradio_client(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STREAMCHAT_CONFIG", "STREAMCHAT_MODEL", "STREAMCHAT_RECORD", "STREAMCHAT_REPLAY", "STREAMCHAT_SPEED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    monkeypatch.setenv("STREAMCHAT_BACKEND", "chat")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")

    def answer(req: TurnRequest) -> Script:
        assert req.user == "Hello there"
        # ~1 s of deltas, so the app's 50 ms coalescing sends several partial values.
        return Script(events=synth.timed(synth.chat_stream(synth.split_text(ANSWER, 2)), step=0.03))

    fake.responder = answer
    fake.core.speed = 1.0

    sys.modules.pop("app", None)  # `demo` is built at import time, from the environment set above
    app = importlib.import_module("app")
    port = free_port()
    try:
        assert app.runtime.live and app.runtime.config.backend == "chat"
        app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        try:
            api = client.view_api(print_info=False, return_format="dict")
            assert isinstance(api, dict)
            assert len(api["named_endpoints"]["/chat"]["parameters"]) == 1
            job = client.submit({"text": "Hello there"}, api_name="/chat")
            values = list(job)
            final = job.result(timeout=15)
        finally:
            client.close()
    finally:
        app.demo.close()
        sys.modules.pop("app", None)

    assert final == ANSWER
    assert values[-1] == ANSWER
    partial = [v for v in values if isinstance(v, str) and v != ANSWER]
    assert len({len(v) for v in partial}) >= 3, values  # it streamed: several growing values
    assert all(ANSWER.startswith(v) for v in partial)
    assert [len(v) for v in partial] == sorted(len(v) for v in partial)
    # Coalesced: far fewer updates than deltas.
    assert len(values) < len(synth.split_text(ANSWER, 2))
    [request] = fake.core.requests("POST", "/chat/completions")
    assert request.body["messages"][-1] == {"role": "user", "content": "Hello there"}
