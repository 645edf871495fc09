"""Differential machinery (tests only): what the app shows for a stream, beside what the
`openai` SDK's own accumulators make of the same bytes, both over real HTTP from the
fake server.

The app's side is the code each driver runs per stream: ``raw_events`` → the backend's
adapter → ``Transcript``. The SDK's side is its stream helpers:
``responses.stream(...).get_final_response()``, ``chat.completions.stream(...)
.get_final_completion()`` and ``beta.threads.runs.stream(...)`` with its event handler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import openai
from conftest import TEST_KEY, Fake

from streamchat import events as ev
from streamchat.backends.assistants import _MARKER, AssistantsAdapter
from streamchat.backends.base import Adapter, NullTap, raw_events
from streamchat.backends.chat import ChatAdapter
from streamchat.backends.responses import ResponsesAdapter
from streamchat.replayapi import Script
from streamchat.transcript import Transcript


@dataclass
class View:
    """What one side makes of a stream."""

    text: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)
    """Function calls: ``(name, arguments)``."""
    citations: list[str] = field(default_factory=list)
    """Where each citation points: a URL, or ``file:<name or id>``."""
    status: str = ""
    """The turn status (app) or the status the SDK's final object gives; ``raised:<Exc>``
    when the SDK gave no final object."""
    transcript: Transcript | None = None


def _client(fake: Fake) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=TEST_KEY, base_url=fake.url, max_retries=0)


async def _assistants_thread(client: openai.AsyncOpenAI) -> str:
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(thread.id, role="user", content="hi")
    return thread.id


_MARK = re.compile(r"\[(\d+)\]")


async def app_view(api: str, fake: Fake, script: Script) -> View:
    fake.push(script)
    client = _client(fake)
    adapter: Adapter
    if api == "responses":
        adapter = ResponsesAdapter()
        request: Any = client.responses.with_streaming_response.create(model="m", input="hi", stream=True)
    elif api == "chat":
        adapter = ChatAdapter()
        request = client.chat.completions.with_streaming_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    else:
        adapter = AssistantsAdapter()
        thread_id = await _assistants_thread(client)
        request = client.beta.threads.runs.with_streaming_response.create(thread_id, assistant_id="asst_x", stream=True)
    transcript = Transcript()
    try:
        async for raw in raw_events(request, NullTap()):
            for event in adapter.handle(raw):
                transcript.handle_event(event)
        if isinstance(adapter, ChatAdapter):
            for event in adapter.done_events():
                transcript.handle_event(event)
        transcript.handle_event(ev.turn_end(adapter.status or "interrupted", adapter.message))
    except openai.APIStatusError as exc:
        transcript.handle_event(ev.turn_end("failed", f"HTTP {exc.status_code}"))
    finally:
        await client.close()
    sources = transcript._sources
    text = transcript.text
    if sources:  # the app marks citations in the text as [n]: the SDK's text has none
        text = _MARK.sub(lambda m: "" if 1 <= int(m.group(1)) <= len(sources) else m.group(0), text)
    calls = [(b.name, b.joined(b.parts)) for b in transcript._tools.values() if not b.server]
    citations = [url for _, url in sources]
    return View(text, calls, citations, transcript.status or "", transcript)


async def sdk_view(api: str, fake: Fake, script: Script) -> View:
    fake.push(script)
    client = _client(fake)
    try:
        if api == "responses":
            return await _sdk_responses(client)
        if api == "chat":
            return await _sdk_chat(client)
        return await _sdk_assistants(client)
    except Exception as exc:  # the SDK gave no final object: which exception says why
        return View(status=f"raised:{type(exc).__name__}")
    finally:
        await client.close()


async def _sdk_responses(client: openai.AsyncOpenAI) -> View:
    async with client.responses.stream(model="m", input="hi") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    view = View(status=str(final.status))
    for item in final.output:
        if item.type == "function_call":
            view.calls.append((item.name, item.arguments))
        if item.type != "message":
            continue
        for part in item.content:
            if part.type == "output_text":
                view.text += part.text
                for note in part.annotations:
                    if note.type == "url_citation":
                        view.citations.append(note.url)
                    elif note.type in ("file_citation", "container_file_citation"):
                        view.citations.append(f"file:{getattr(note, 'filename', None) or note.file_id}")
                    elif note.type == "file_path":
                        view.citations.append(f"file:{note.file_id}")
            elif part.type == "refusal":
                view.text += part.refusal
    return view


_FINISH = {"stop": "completed", "tool_calls": "completed", "function_call": "completed", "length": "incomplete"}


async def _sdk_chat(client: openai.AsyncOpenAI) -> View:
    async with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "hi"}]) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    choice = final.choices[0]
    message = choice.message
    view = View(text=(message.content or "") + (message.refusal or ""))
    view.calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or [] if c.type == "function"]
    view.citations = [a.url_citation.url for a in message.annotations or []]
    view.status = _FINISH.get(str(choice.finish_reason), f"finish:{choice.finish_reason}")
    return view


async def _sdk_assistants(client: openai.AsyncOpenAI) -> View:
    thread_id = await _assistants_thread(client)
    async with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id="asst_x") as stream:
        await stream.until_done()
        run = stream.current_run
        # get_final_messages raises when the stream made no message (a requires_action stream)
        messages = await stream.get_final_messages() if stream.current_message_snapshot else []
    view = View(status=str(run.status) if run else "raised:NoRun")
    for message in messages:
        for part in message.content:
            if part.type == "text":
                view.text += _MARKER.sub("", part.text.value)
                for note in part.text.annotations:
                    file_id = note.file_citation.file_id if note.type == "file_citation" else note.file_path.file_id
                    view.citations.append(f"file:{file_id}")
    if run is not None and run.required_action is not None:
        view.calls = [(c.function.name, c.function.arguments) for c in run.required_action.submit_tool_outputs.tool_calls]
        view.status = "completed"  # this stream is over; the run goes on once the outputs are in
    return view


def compare(app: View, sdk: View, *, citations: bool = True) -> list[str]:
    """How the app's view differs from the SDK's (empty when they agree)."""
    out = []
    if sdk.status.startswith("raised:"):
        if app.status == "completed":
            out.append(f"the SDK gave no final object ({sdk.status}) but the app shows a complete answer")
        return out
    if app.status != sdk.status:
        out.append(f"status: app {app.status!r}, SDK {sdk.status!r}")
    if app.text != sdk.text:
        out.append(f"text: app {app.text[:80]!r}…, SDK {sdk.text[:80]!r}…")
    if app.calls != sdk.calls:
        out.append(f"calls: app {app.calls}, SDK {sdk.calls}")
    if citations and sorted(set(app.citations)) != sorted(set(sdk.citations)):
        out.append(f"citations: app {app.citations}, SDK {sdk.citations}")
    elif len(set(app.citations)) != len(set(sdk.citations)):
        # Assistants: the app names a cited file by the name its search found, where the
        # SDK has only the file id: the sources are counted, not named.
        out.append(f"citation count: app {app.citations}, SDK {sdk.citations}")
    return out
