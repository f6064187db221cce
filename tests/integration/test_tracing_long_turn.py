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

import aiohttp
import pytest

from sluice.telemetry.service import Telemetry
from sluice.testing import FakeAnthropic

from otlp_receiver import OtlpReceiver
from support import Gateway, fixture_request, start_gateway

SESSION = "0d6c9d39-long-turn"
STEPS = 24  # 2 KB a tool result: the last requests carry ~60 KB of messages
SKIP_HEADERS = {"authorization", "host", "content-length", "connection", "accept-encoding"}


def tracing_yaml(endpoint: str) -> str:
    return f"tracing:\n  enabled: true\n  otlp_endpoint: {endpoint}\n  flush_interval_ms: 20\n"


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


async def post(gw: Gateway, messages: list[dict[str, Any]], key: str) -> str:
    sent, body = fixture_request("10-tool-loop-turn1.json")
    document = json.loads(body)
    document["messages"] = messages
    headers = {k: v for k, v in sent if k.lower() not in SKIP_HEADERS}
    headers["Authorization"] = f"Bearer {key}"
    headers["X-Claude-Code-Session-Id"] = SESSION
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gw.url}/v1/messages", json=document, headers=headers) as resp,
    ):
        await resp.read()
        assert resp.status == 200, await resp.text()
        return resp.headers["request-id"]


def telemetry(gw: Gateway) -> Telemetry:
    return gw.server.app.services.telemetry


async def test_every_request_of_a_long_turn_on_either_replica_is_one_trace(
    fake: FakeAnthropic, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    a = await start_gateway(tmp_path / "a.db", fake.url, tracing_yaml(receiver.url))
    b = await start_gateway(tmp_path / "b.db", fake.url, tracing_yaml(receiver.url))
    try:
        for steps in range(STEPS + 1):
            await post(a, history(steps), a.key)
        recalled = await post(a, history(STEPS + 1, rewrite=True), a.key)
        read_whole = await post(b, history(STEPS + 1, rewrite=True), b.key)  # b: first sight
        from_b = await post(b, history(STEPS + 1), b.key)
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
