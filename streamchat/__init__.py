"""Stream an AI assistant's reply into a Gradio chat, record the provider's event
streams, and replay them offline through the same code path."""

__version__ = "0.1.0"
