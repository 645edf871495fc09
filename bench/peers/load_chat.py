"""Peer: Gradio's built-in chat for OpenAI-compatible endpoints, ``gr.load_chat``,
pointed at the benchmark's fake server (OPENAI_BASE_URL, OPENAI_API_KEY)."""

import os

import gradio as gr

demo = gr.load_chat(os.environ["OPENAI_BASE_URL"], model="bench-model", token=os.environ["OPENAI_API_KEY"])

if __name__ == "__main__":
    demo.launch()
