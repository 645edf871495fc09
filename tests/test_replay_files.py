"""The fake server's Files, vector store and container routes, and how it names a
message's attachments in the model's context, driven by the real `openai` client over
real HTTP: each attachment form the three APIs take is named by its bytes' SHA-256."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import openai
import pytest
from conftest import TEST_KEY, Fake
from images import png

from streamchat.attachments import Limits, classify, inline_text
from streamchat.replayapi import Script
from streamchat.testing import synth


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
def client(fake: Fake) -> openai.OpenAI:
    return openai.OpenAI(api_key=TEST_KEY, base_url=fake.url, max_retries=0)


def drain(stream: object) -> None:
    for _ in stream:  # type: ignore[attr-defined]
        pass


def test_files_upload_read_and_delete(client: openai.OpenAI, fake: Fake) -> None:
    data = png()
    made = client.files.create(file=("red.png", data, "image/png"), purpose="vision")
    assert made.filename == "red.png" and made.bytes == len(data) and made.purpose == "vision"
    assert client.files.retrieve(made.id).id == made.id
    assert client.files.content(made.id).read() == data
    assert fake.core.files.sha256(made.id) == sha(data)
    assert client.files.delete(made.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made.id)


def test_a_vector_store_holds_its_files_until_deleted(client: openai.OpenAI, fake: Fake) -> None:
    doc = b"The launch code is 4242.\n"
    file = client.files.create(file=("notes.txt", doc, "text/plain"), purpose="assistants")
    store = client.vector_stores.create(name="session")
    attached = client.vector_stores.files.create_and_poll(file_id=file.id, vector_store_id=store.id)
    assert attached.status == "completed"
    assert fake.core.files.store_files(store.id) == [sha(doc)]
    assert fake.core.live_objects("vector_store") == [store.id]
    client.vector_stores.delete(store.id)
    assert fake.core.live_objects("vector_store") == []
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_the_model_sees_each_responses_attachment_by_its_hash(client: openai.OpenAI, fake: Fake) -> None:
    image, doc = png(), b"%PDF-1.4 tiny\n"
    uploaded = client.files.create(file=("b.png", png(rgb=(0, 0, 255)), "image/png"), purpose="vision")
    content = [
        {"type": "input_text", "text": "What are these?"},
        {"type": "input_image", "image_url": data_url(image)},
        {"type": "input_image", "file_id": uploaded.id},
        {"type": "input_file", "filename": "a.pdf", "file_data": data_url(doc, "application/pdf")},
    ]
    drain(client.responses.create(model="m", input=[{"role": "user", "content": content}], stream=True))  # type: ignore[list-item]
    blue = fake.core.files.sha256(uploaded.id)
    assert fake.core.contexts[-1] == [("user", "What are these?"), ("image", sha(image)), ("image", blue), ("file", sha(doc))]
    assert fake.requests_seen[-1].attachments == (sha(image), blue, sha(doc))


def test_the_model_sees_chat_images_and_inlined_files(client: openai.OpenAI, fake: Fake, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Plan\nShip it.\n", encoding="utf-8")
    attachment = classify(notes.read_bytes(), "notes.md", Limits(), path=notes)
    image = png()
    content = [
        {"type": "text", "text": "Summarise"},
        {"type": "image_url", "image_url": {"url": data_url(image)}},
        {"type": "text", "text": inline_text(attachment)},
    ]
    drain(client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}], stream=True))  # type: ignore[misc,list-item]
    # The inlined file is not the user's words: it is named by the file's own hash.
    assert fake.core.contexts[-1] == [("user", "Summarise"), ("image", sha(image)), ("file", attachment.sha256)]
    assert fake.requests_seen[-1].user == "Summarise"


def test_the_model_sees_assistants_image_files_and_attachments(client: openai.OpenAI, fake: Fake) -> None:
    image, doc = png(), b"id,value\n1,2\n"
    image_file = client.files.create(file=("chart.png", image, "image/png"), purpose="vision")
    doc_file = client.files.create(file=("data.csv", doc, "text/csv"), purpose="assistants")
    store = client.vector_stores.create(file_ids=[doc_file.id])
    assistant = client.beta.assistants.create(model="m", tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    client.beta.threads.messages.create(
        thread.id,
        role="user",
        content=[{"type": "text", "text": "Look"}, {"type": "image_file", "image_file": {"file_id": image_file.id}}],
        attachments=[{"file_id": doc_file.id, "tools": [{"type": "code_interpreter"}]}],
    )
    fake.push(Script(events=synth.timed(synth.assistants_stream(["ok"]), step=0)))
    drain(client.beta.threads.runs.create(thread.id, assistant_id=assistant.id, stream=True))
    assert fake.core.contexts[-1] == [("user", "Look"), ("image", sha(image)), ("file", sha(doc))]
    run = fake.core.requests("POST", f"threads/{thread.id}/runs")[-1]
    assert run.stores == {store.id: [sha(doc)]}  # what file_search could search


def test_a_file_a_tool_made_is_served_for_download(client: openai.OpenAI, fake: Fake) -> None:
    plot = png(rgb=(0, 128, 0))
    events = synth.timed(synth.responses_stream(["Here is the plot."]), step=0)
    fake.push(Script(events=events, files={"cfile_plot1": ("plot.png", plot)}))
    drain(client.responses.create(model="m", input="Plot it", stream=True))
    got = client.containers.files.content.retrieve("cfile_plot1", container_id="cntr_auto1")
    assert got.read() == plot


def test_an_upload_without_a_file_is_refused(client: openai.OpenAI, fake: Fake) -> None:
    with pytest.raises(openai.BadRequestError, match="file"):
        client.post("/files", body={"purpose": "vision"}, cast_to=object)
