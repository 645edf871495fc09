"""Peer: the minimal streaming ChatInterface of Gradio's ``llm_openai`` demo pattern.

A sync generator on the sync `openai` client that yields the joined text after every
chunk. The client reads OPENAI_API_KEY and OPENAI_BASE_URL (the benchmark points them
at its fake server); launch() reads GRADIO_SERVER_NAME and GRADIO_SERVER_PORT.
"""

import gradio as gr
from openai import OpenAI

client = OpenAI()


def predict(message, history):
    history.append({"role": "user", "content": message})
    stream = client.chat.completions.create(messages=history, model="bench-model", stream=True)
    chunks = []
    for chunk in stream:
        chunks.append(chunk.choices[0].delta.content or "")
        yield "".join(chunks)


demo = gr.ChatInterface(predict)

if __name__ == "__main__":
    demo.launch()
