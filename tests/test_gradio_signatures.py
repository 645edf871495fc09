"""``main._gradio_signatures_cached`` (issue 16): Gradio's block configs come out the same
with the cached signatures, and the cache neither misses a repeat nor keeps objects alive."""

from __future__ import annotations

import gc
import inspect
import weakref
from collections.abc import Iterator
from pathlib import Path

import gradio.blocks
import pytest
from conftest import replay_settings

from streamchat.main import _gradio_signatures_cached
from streamchat.session import Runtime
from streamchat.ui import build_demo

BUNDLED = Path(__file__).resolve().parent.parent / "recordings"


@pytest.fixture
def cached() -> Iterator[None]:
    before = gradio.blocks.inspect
    _gradio_signatures_cached()
    try:
        yield
    finally:
        gradio.blocks.inspect = before  # type: ignore[attr-defined]


def test_every_block_config_is_the_same_as_without_the_cache(cached: None) -> None:
    demo = build_demo(Runtime(replay_settings(BUNDLED)))
    with_cache = {key: gradio.blocks.BlocksConfig.config_for_block(key, [], b) for key, b in demo.blocks.items()}
    again = {key: gradio.blocks.BlocksConfig.config_for_block(key, [], b) for key, b in demo.blocks.items()}
    gradio.blocks.inspect = inspect  # type: ignore[attr-defined]
    plain = {key: gradio.blocks.BlocksConfig.config_for_block(key, [], b) for key, b in demo.blocks.items()}
    assert len(plain) > 20
    assert with_cache == plain
    assert again == plain


def test_a_repeat_is_served_from_the_cache_and_the_rest_of_inspect_is_inspect(cached: None) -> None:
    shim = gradio.blocks.inspect
    assert shim is not inspect
    assert shim.isclass is inspect.isclass and shim.Parameter is inspect.Parameter
    first = shim.signature(gradio.Chatbot.__init__)
    assert first == inspect.signature(gradio.Chatbot.__init__)
    assert shim.signature(gradio.Chatbot.__init__) is first
    assert shim.signature(len) == inspect.signature(len)  # not weakly referable: not cached, still right
    _gradio_signatures_cached()
    assert gradio.blocks.inspect is shim  # a second call changes nothing


def test_the_cache_keeps_nothing_alive(cached: None) -> None:
    def handler(a: int, b: str = "x") -> None: ...

    assert gradio.blocks.inspect.signature(handler) == inspect.signature(handler)
    gone = weakref.ref(handler)
    del handler
    gc.collect()
    assert gone() is None
