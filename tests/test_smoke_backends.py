"""Each backend streams a multi-delta answer from the fake server, over real HTTP."""

from __future__ import annotations

import pytest
from conftest import Fake, run_turn, text_script

APIS = ["responses", "assistants", "chat"]


@pytest.mark.parametrize("api", APIS)
async def test_multibyte_text_split_across_deltas(api: str, fake: Fake, live_runtime) -> None:
    text = "こんにちは、世界! 🎉🚀 ok"
    fake.push(text_script(api, text, size=2))
    runtime = live_runtime(api)
    session = runtime.new_session()
    values = await run_turn(session, "hi")
    assert values[-1] == text
    # It streamed: the reply grew through several lengths before it was complete.
    lengths = [len(v) for v in values if isinstance(v, str)]
    assert len(set(lengths)) >= 5 and lengths == sorted(lengths)
    assert session.last_status == "completed"
