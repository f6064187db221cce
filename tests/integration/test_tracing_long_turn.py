"""A long tool loop (past the size where a gateway recalls where a conversation's turn opened
instead of reading its history whole) is one trace, whichever replica serves a request:
one that saw every request before it and one that saw none find the same turn. The one
change recall is documented not to see (a middle message rewritten to user text of the same
length) shows which replica read what."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sluice.testing import FakeAnthropic
from tracing_support import post_messages, telemetry, tracing_yaml

from otlp_receiver import OtlpReceiver
from support import start_gateway

SESSION = {"X-Claude-Code-Session-Id": "0d6c9d39-long-turn"}
STEPS = 24  # 2 KB a tool result: the last requests carry ~60 KB of messages


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver() as server:
        yield server


def history(steps: int, rewrite: bool = False) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "refactor the parser"}]}
    ]
    for n in range(steps):
        use = {"type": "tool_use", "id": f"toolu_{n:04d}", "name": "Read", "input": {"n": n}}
        messages.append({"role": "assistant", "content": [use]})
        result = {"type": "tool_result", "tool_use_id": f"toolu_{n:04d}", "content": "x" * 2048}
        messages.append({"role": "user", "content": [result]})
    if rewrite:  # message 6 (a tool result) becomes user text of the very same length
        size = len(json.dumps(messages[6]))
        text = {"role": "user", "content": [{"type": "text", "text": ""}]}
        text["content"][0]["text"] = "y" * (size - len(json.dumps(text)))
        assert len(json.dumps(text)) == size
        messages[6] = text
    last = messages[-1]["content"][-1]
    last["cache_control"] = {"type": "ephemeral"}  # where Claude Code puts it: the last block
    return messages


async def test_every_request_of_a_long_turn_on_either_replica_is_one_trace(
    fake: FakeAnthropic, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    a = await start_gateway(tmp_path / "a.db", fake.url, tracing_yaml(receiver.url))
    b = await start_gateway(tmp_path / "b.db", fake.url, tracing_yaml(receiver.url))
    try:
        for steps in range(STEPS + 1):
            await post_messages(a, history(steps), **SESSION)
        recalled = await post_messages(a, history(STEPS + 1, rewrite=True), **SESSION)
        # b's first sight of the conversation: it reads the rewrite whole.
        read_whole = await post_messages(b, history(STEPS + 1, rewrite=True), **SESSION)
        from_b = await post_messages(b, history(STEPS + 1), **SESSION)
        await telemetry(a).flush()
        await telemetry(b).flush()
        await receiver.wait_for(STEPS + 6)
    finally:
        await a.server.stop()
        await b.server.stop()
    chats = {c.attributes["langwatch.gateway_request_id"]: c for c in receiver.named("chat ")}
    assert len(chats) == STEPS + 4
    turn = {c.trace_id for r, c in chats.items() if r != read_whole}
    assert len(turn) == 1  # a's requests, the rewrite a recalled past, and b's later request
    assert chats[read_whole].trace_id not in turn  # b read the rewrite: a new turn at 6
    roots = {s.span_id for s in receiver.named("invoke_agent ") if s.trace_id in turn}
    assert len(roots) == 1
    assert {c.parent_span_id for r, c in chats.items() if r != read_whole} == roots
    assert chats[recalled].trace_id == chats[from_b].trace_id
