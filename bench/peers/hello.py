"""Baseline for start-up time: a bare ``gr.ChatInterface`` hello world."""

import gradio as gr


def hello(message, history):
    return "Hello!"


demo = gr.ChatInterface(hello)

if __name__ == "__main__":
    demo.launch()
