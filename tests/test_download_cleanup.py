"""A download copy goes when its session ends (issue 17, case 7): the running app, a
client that chats and asks for its recording as the page does, then closes; the URL
it was given no longer serves anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from conftest import Fake
from gradio_client import Client
from test_load import launched_app, wait_until


def fn_index(demo: Any, name: str) -> int:
    return next(i for i, fn in demo.fns.items() if getattr(fn.fn, "__name__", "") == name)


def call_as_page(url: str, session_hash: str, index: int) -> Any:
    """Run event ``index`` for ``session_hash`` through Gradio's queue, as the page
    does, and return its first output's value."""
    join = {"data": [None], "event_data": None, "fn_index": index, "trigger_id": None, "session_hash": session_hash}
    response = httpx2.post(f"{url}gradio_api/queue/join", json=join, timeout=30)
    assert response.status_code == 200, response.text
    with httpx2.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session_hash}, timeout=30) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                assert message.get("success"), message
                output = message["output"]["data"][0]
                return output.get("value", output) if isinstance(output, dict) and "__type__" in output else output
    raise AssertionError("the event never completed")


def test_a_download_copy_is_removed_when_its_session_ends(fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    record = tmp_path / "rec"
    with launched_app(fake, "chat", monkeypatch, STREAMCHAT_RECORD=str(record)) as (app, url):
        client = Client(url, verbose=False, download_files=False)
        closed = False
        try:
            assert client.predict({"text": "first message"}, api_name="/chat") == "Echo: first message"
            # What the page's chatbot.change does after each turn (a private event: the
            # page calls it by index, as here).
            value = call_as_page(url, client.session_hash, fn_index(app.demo, "refresh_download"))
            file_url = value["url"]
            served = httpx2.get(file_url, timeout=10)
            assert served.status_code == 200 and '"user":"first message"' in served.text
            cached = Path(value["path"])
            assert cached.is_file()
            client.close()  # the tab closes: its heartbeat ends, Gradio unloads the session
            closed = True
            assert wait_until(lambda: httpx2.get(file_url, timeout=10).status_code != 200, timeout=20.0)
            assert httpx2.get(file_url, timeout=10).status_code in (403, 404)
            assert not cached.exists()
            assert [p.name for p in record.iterdir()]  # the recording itself stays
        finally:
            if not closed:
                client.close()
