"""The model sees what the chat shows, on every backend: send, Undo, Retry, Edit, a new
chat and a saved chat reopened after a restart, driven through ``ChatSession`` the way
Gradio's ChatInterface drives it (the history as the browser sends it), against the
fake server, which keeps server-side state as OpenAI does and logs what the model saw.

The fake answers each request with the user messages it saw, so the answer on the page
and the server's own view of the context can be compared after every step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_CONFIG, TEST_KEY, Fake, make_settings, replay_settings, text_script

from streamchat.backends.history import content_text, history_key, visible
from streamchat.replayapi import ReplayAPI, Reply, Script, TurnRequest
from streamchat.replayapi.base import error
from streamchat.serve import serve_in_thread
from streamchat.session import ChatSession, Runtime
from streamchat.testing import synth
from streamchat.testing.faults import FaultScript

APIS = ["responses", "assistants", "chat"]
FIXTURES = Path(__file__).parent / "fixtures"
TOOL_PROMPT = "roll a die"
DICE_CONFIG = (
    BASE_CONFIG
    + """
tools:
  - name: roll_dice
    description: Roll dice.
    handler: streamchat.demo_tools:roll_dice
    parameters:
      type: object
      properties:
        sides: {type: integer}
        seed: {type: integer}
      required: [sides, seed]
      additionalProperties: false
"""
)


def seen_text(users: list[str]) -> str:
    return "Seen: " + " | ".join(users)


def answer_what_was_seen(req: TurnRequest) -> Script:
    """The fake model: a die roll for ``TOOL_PROMPT``, else the user messages it saw."""
    if req.user == TOOL_PROMPT and req.stream == 0:
        call = synth.FunctionCall("roll_dice", '{"sides": 6, "seed": 7}', call_id=f"call_dice_{req.position}")
        return FaultScript(
            events=synth.timed(
                {"responses": synth.responses_stream, "assistants": synth.assistants_stream, "chat": synth.chat_stream}[req.api](
                    calls=[call]
                ),
                step=0,
            )
        )
    return text_script(req.api, seen_text([text for role, text in req.context if role == "user"]))


def browser_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as Gradio's browser sends it back: content as a list of parts."""
    content = message["content"]
    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
    return {"role": message["role"], "metadata": message.get("metadata"), "content": parts, "options": None}


class Page:
    """The chat as ChatInterface keeps it, with its buttons."""

    def __init__(self, session: ChatSession, history: list[dict[str, Any]] | None = None) -> None:
        self.session = session
        self.history: list[dict[str, Any]] = history or []

    async def send(self, text: str) -> str:
        values = [v async for v in self.session.turn(text, list(self.history))]
        final = values[-1]
        answer = final if isinstance(final, list) else [{"role": "assistant", "content": final}]
        self.history += [browser_message({"role": "user", "content": text}), *map(browser_message, answer)]
        return content_text(visible(answer)[-1]["content"]) if visible(answer) else ""

    def undo(self) -> str:
        """Gradio's ``_pop_last_user_message``: the last user message and what followed go."""
        i = len(self.history) - 1
        while i >= 0 and self.history[i]["role"] == "assistant":
            i -= 1
        while i >= 0 and self.history[i]["role"] == "user":
            i -= 1
        popped = self.history[i + 1 :]
        self.history = self.history[: i + 1]
        return "".join(content_text(m["content"]) for m in popped if m["role"] == "user")

    async def retry(self) -> str:
        return await self.send(self.undo())

    async def edit(self, index: int, text: str) -> str:
        """Gradio's ``_edit_message``: the history up to the edited message, then it is sent."""
        self.history = self.history[:index]
        return await self.send(text)


@pytest.fixture
def answering(fake: Fake) -> Fake:
    fake.responder = answer_what_was_seen
    fake.core.contexts.clear()
    return fake


def runtime_for(fake: Fake, api: str, config: str = BASE_CONFIG) -> Runtime:
    return Runtime(make_settings(api, url=fake.url, config=config))


def users_seen(fake: Fake) -> list[str]:
    return [text for role, text in fake.core.contexts[-1] if role == "user"]


async def check(page: Page, fake: Fake, text: str, expected: list[str], *, step: Any = None) -> None:
    before = len(fake.core.contexts)
    answer = await (step if step is not None else page.send(text))
    assert len(fake.core.contexts) == before + 1, "one streaming request for a plain turn"
    assert users_seen(fake) == expected
    assert answer == seen_text(expected)  # the page and the server agree


@pytest.mark.parametrize("api", APIS)
async def test_undo_retry_edit_and_new_chat(api: str, answering: Fake) -> None:
    fake = answering
    runtime = runtime_for(fake, api)
    session = runtime.new_session()
    page = Page(session)
    await check(page, fake, "alpha", ["alpha"])
    await check(page, fake, "bravo", ["alpha", "bravo"])
    assert page.undo() == "bravo"
    await check(page, fake, "charlie", ["alpha", "charlie"])
    # The whole context, not only its user messages: the undone answer is gone too.
    assert fake.core.contexts[-1] == [("user", "alpha"), ("assistant", seen_text(["alpha"])), ("user", "charlie")]
    await check(page, fake, "", ["alpha", "charlie"], step=page.retry())
    assert fake.core.contexts[-1] == [("user", "alpha"), ("assistant", seen_text(["alpha"])), ("user", "charlie")]
    await check(page, fake, "", ["delta"], step=page.edit(0, "delta"))
    assert fake.core.contexts[-1] == [("user", "delta")]
    await check(page, fake, "echo", ["delta", "echo"])
    # "New chat" (saved chats keep the session): an empty history, a fresh context.
    page.history = []
    await check(page, fake, "foxtrot", ["foxtrot"])
    await session.close()
    for kind in ("conversation", "thread"):
        assert fake.core.live_objects(kind) == []  # whatever the session made, it deleted
    await runtime.shutdown()


@pytest.mark.parametrize("api", APIS)
async def test_saved_chat_reopened_after_a_restart(api: str, answering: Fake) -> None:
    fake = answering
    first = runtime_for(fake, api)
    page = Page(first.new_session())
    await page.send("alpha")
    await page.send("bravo")
    saved = list(page.history)
    await page.session.close()
    await first.shutdown()

    # A new process: no remote state, no memory; the chat comes back from the browser.
    second = runtime_for(fake, api)
    session = second.new_session()
    reopened = Page(session, list(saved))
    await check(reopened, fake, "charlie", ["alpha", "bravo", "charlie"])
    assert fake.core.contexts[-1][:4] == [
        ("user", "alpha"),
        ("assistant", seen_text(["alpha"])),
        ("user", "bravo"),
        ("assistant", seen_text(["alpha", "bravo"])),
    ]
    # Another saved chat in the same tab: exactly that one, nothing of the first.
    other = Page(session, saved[:2])
    await check(other, fake, "delta", ["alpha", "delta"])
    await session.close()
    for kind in ("conversation", "thread"):
        assert fake.core.live_objects(kind) == []
    await second.shutdown()


@pytest.mark.parametrize("api", APIS)
async def test_tool_calls_of_kept_turns_stay_and_of_undone_turns_go(api: str, answering: Fake) -> None:
    fake = answering
    runtime = runtime_for(fake, api, DICE_CONFIG)
    session = runtime.new_session()
    page = Page(session)
    await page.send(TOOL_PROMPT)
    await page.send("bravo")
    kinds = [role for role, _ in fake.core.contexts[-1]]
    if api == "assistants":
        # A run's tool steps are not thread messages: later runs never saw them.
        assert kinds == ["user", "assistant", "user"]
    else:
        assert kinds == ["user", "tool_call", "tool_output", "assistant", "user"]
        assert fake.core.contexts[-1][1] == ("tool_call", 'roll_dice({"sides": 6, "seed": 7})')
    page.undo()
    page.undo()
    await page.send("charlie")
    assert fake.core.contexts[-1] == [("user", "charlie")]
    await session.close()
    await runtime.shutdown()


@pytest.mark.parametrize("api", APIS)
async def test_a_failed_turn_then_retry_leaves_nothing_behind(api: str, answering: Fake) -> None:
    fake = answering
    runtime = runtime_for(fake, api)
    session = runtime.new_session()
    page = Page(session)
    await page.send("alpha")
    fake.push(FaultScript(status=500, error={"message": "boom", "type": "server_error", "code": None}))
    await page.send("bravo")
    assert session.last_status == "failed"
    await check(page, fake, "", ["alpha", "bravo"], step=page.retry())
    assert fake.core.contexts[-1] == [("user", "alpha"), ("assistant", seen_text(["alpha"])), ("user", "bravo")]
    await session.close()
    await runtime.shutdown()


async def test_responses_undo_deletes_the_undone_items(answering: Fake) -> None:
    """Undo on Responses deletes the undone items from the same conversation (cheap)
    rather than seeding a new one; a reopened saved chat seeds a new one."""
    fake = answering
    runtime = runtime_for(fake, "responses")
    session = runtime.new_session()
    page = Page(session)
    await page.send("alpha")
    await page.send("bravo")
    conversation = session.conv.conversation_id
    page.undo()
    await page.send("charlie")
    assert session.conv.conversation_id == conversation
    deleted = [r.path for r in fake.core.requests("DELETE", f"/conversations/{conversation}/items/")]
    assert len(deleted) == 2  # bravo and its answer
    page.history = [
        *page.history[:2],
        browser_message({"role": "user", "content": "zulu"}),
        browser_message({"role": "assistant", "content": "an answer from elsewhere"}),
    ]
    await page.send("yankee")
    assert session.conv.conversation_id != conversation
    assert fake.core.live_objects("conversation") == [session.conv.conversation_id]
    await session.close()
    await runtime.shutdown()


# -- the history in every shape Gradio sends ----------------------------------------


def test_browser_payloads_become_the_same_messages_as_strings() -> None:
    """Fixtures captured from Chromium (tests/test_browser_state.py writes them): the
    history a real browser sends, next to what gradio_client sends for the same chat."""
    captured = json.loads((FIXTURES / "browser_history.json").read_text(encoding="utf-8"))
    assert captured, "the fixture holds at least one captured history"
    for history in captured:
        assert any(isinstance(m["content"], list) for m in history)  # the browser sends parts
        seen = visible(history)
        assert seen and all(isinstance(m["content"], str) and m["content"] for m in seen)
        as_strings = [{"role": m["role"], "content": m["content"]} for m in seen]
        assert history_key(visible(as_strings)) == history_key(seen)
        for message in history:
            if message.get("metadata"):  # the app's bubbles never reach the model
                assert all(content_text(message["content"]) != m["content"] for m in seen)


def test_every_content_shape() -> None:
    history = [
        {"role": "user", "content": "plain"},
        {"role": "assistant", "content": [{"type": "text", "text": "parts"}], "metadata": None},
        {"role": "assistant", "content": "⚠️ status", "metadata": {"title": "⚠️ Interrupted"}},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/tmp/x/cat.png", "orig_name": "cat.png"}}]},
        {"role": "user", "content": ("/tmp/y/report.pdf",)},
        {"role": "user", "content": {"path": "/tmp/z/data.csv"}},
        {
            "role": "user",
            "content": [{"type": "component", "component": "image", "value": {}, "props": {}, "constructor_args": {}}],
        },
        {"role": "assistant", "content": "   indented\n   text  "},
    ]
    assert visible(history) == [
        {"role": "user", "content": "plain"},
        {"role": "assistant", "content": "parts"},
        {"role": "user", "content": "[file: cat.png]"},
        {"role": "user", "content": "[file: report.pdf]"},
        {"role": "user", "content": "[file: data.csv]"},
        {"role": "user", "content": "[image]"},
        {"role": "assistant", "content": "   indented\n   text  "},
    ]
    # Gradio re-indents text on its way to the page (inspect.cleandoc): same key.
    assert history_key(visible([{"role": "user", "content": "a\n    b"}])) == history_key(
        visible([{"role": "user", "content": "a\nb"}])
    )


# -- recording and replay -----------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_a_branched_live_chat_replays_the_way_it_went(api: str, answering: Fake, tmp_path: Path) -> None:
    """Recorded live: alpha, bravo, Undo, charlie, Retry. Each turn line says where it
    stood (position, parent); replayed, Retry gets the same recorded turn, Undo steps
    back, and the answers are the ones the user saw."""
    fake = answering
    numbered = 0

    def numbered_answer(req: TurnRequest) -> Script:
        nonlocal numbered
        numbered += 1
        users = [text for role, text in req.context if role == "user"]
        return text_script(req.api, f"{seen_text(users)} #{numbered}")

    fake.responder = numbered_answer
    runtime = Runtime(make_settings(api, url=fake.url, record_dir=tmp_path / "rec"))
    page = Page(runtime.new_session())
    assert await page.send("alpha") == "Seen: alpha #1"
    assert await page.send("bravo") == "Seen: alpha | bravo #2"
    page.undo()
    assert await page.send("charlie") == "Seen: alpha | charlie #3"
    assert await page.retry() == "Seen: alpha | charlie #4"
    await page.session.close()
    await runtime.shutdown()

    [path] = (tmp_path / "rec").glob("*.jsonl")
    turns = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if '"kind":"turn"' in line]
    assert [(t["user"], t["position"], t.get("parent")) for t in turns] == [
        ("alpha", 0, None),
        ("bravo", 1, 0),
        ("charlie", 1, 0),
        ("charlie", 1, 0),
    ]

    replayer = Runtime(replay_settings(tmp_path / "rec", config=runtime.config))
    replay = Page(replayer.new_session())
    assert await replay.send("alpha") == "Seen: alpha #1"
    assert await replay.send("charlie") == "Seen: alpha | charlie #4"  # the answer that stayed
    assert await replay.retry() == "Seen: alpha | charlie #4"  # Retry: the same turn again
    replay.undo()
    assert await replay.send("bravo") == "Seen: alpha | bravo #2"  # Undo: a step back
    edited = await replay.edit(0, "charlie")  # an edited message is matched like a typed one
    typed = await Page(replayer.new_session()).send("charlie")
    assert edited == typed == "Seen: alpha | charlie #3"  # never first: the first one after
    await replay.session.close()
    await replayer.shutdown()


class NoConversations(ReplayAPI):
    """A Responses server without the Conversations API: chains only."""

    async def _route(self, method: str, parts: list[str], body: dict[str, Any], query: dict[str, str]) -> Reply:
        if parts[0] == "conversations":
            return error(404, "Unknown route.", "unknown_url")
        return await super()._route(method, parts, body, query)


async def test_responses_without_conversations_branches_its_response_chain() -> None:
    """Chaining ``previous_response_id``: Undo and Retry continue from the response
    that produced the kept answer; an unknown history is sent as input items."""
    core = NoConversations(answer_what_was_seen, api_key=TEST_KEY)
    server = serve_in_thread(core)
    try:
        runtime = Runtime(make_settings("responses", url=server.url))
        page = Page(runtime.new_session())
        for text, seen in (("alpha", ["alpha"]), ("bravo", ["alpha", "bravo"])):
            assert await page.send(text) == seen_text(seen)
        page.undo()
        assert await page.send("charlie") == seen_text(["alpha", "charlie"])
        assert await page.retry() == seen_text(["alpha", "charlie"])
        assert core.contexts[-1] == [("user", "alpha"), ("assistant", seen_text(["alpha"])), ("user", "charlie")]
        chained = [r.body.get("previous_response_id") for r in core.requests("POST", "/responses")]
        assert chained[0] is None and chained[2] == chained[3] == chained[1]  # both branch from alpha's answer
        assert await page.edit(0, "delta") == seen_text(["delta"])
        saved = list(page.history)
        await runtime.shutdown()

        again = Runtime(make_settings("responses", url=server.url))
        reopened = Page(again.new_session(), saved)
        assert await reopened.send("echo") == seen_text(["delta", "echo"])
        first = core.requests("POST", "/responses")[-1].body
        assert "previous_response_id" not in first and len(first["input"]) == 3  # the chat, then the message
        await again.shutdown()
    finally:
        server.stop()
