"""Floor for the crowd: the least a streaming ``gr.ChatInterface`` does per call (an async
generator that yields one value), served as ``app.py`` serves this app (one queue, no
concurrency limit in the way)."""

import gradio as gr


async def hello(message, history):
    yield "Hello!"


demo = gr.ChatInterface(hello, api_name="chat")

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1000).launch(max_threads=1000)
