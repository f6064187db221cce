"""One contract, every provider: the official anthropic SDK through a running gateway in front
of each kind's fake upstream (Anthropic, Bedrock, Vertex, OpenAI-compatible)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from anthropic.lib.streaming import AsyncMessageStreamManager
from anthropic.types import Message, RawMessageStreamEvent

from sluice.testing.scenarios import (
    FakeUsage,
    Fault,
    Reply,
    Scenario,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    scenario_by_name,
)

from lanes import KINDS, MODEL, Lane, lane
from support import FIXTURES, fixture_request


@pytest.fixture(params=KINDS)
async def up(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lane]:
    async with lane(request.param, tmp_path) as running:
        yield running


def _client(up: Lane) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=up.gateway.url, api_key=up.gateway.key, max_retries=0)


HELLO = [{"role": "user", "content": "Say hello."}]


async def _row(up: Lane, request_id: str) -> dict[str, Any]:
    return await up.gateway.ledger_row(request_id)


async def test_text_non_streaming(up: Lane) -> None:
    up.fake.set_default(Scenario(Reply([TextBlock("Hello from every upstream.")])))
    async with _client(up) as client:
        raw = await client.messages.with_raw_response.create(
            model=MODEL, max_tokens=64, messages=HELLO
        )
        message = await raw.parse()
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hello from every upstream."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.model == MODEL
    assert (message.usage.input_tokens, message.usage.output_tokens) == (25, 12)
    row = await _row(up, raw.headers["request-id"])
    assert (row["provider"], row["status"], row["streaming"]) == ("up", 200, False)
    assert (row["input_tokens"], row["output_tokens"]) == (25, 12)


async def test_text_streaming(up: Lane) -> None:
    up.fake.set_default(Scenario(Reply([TextBlock("Streaming through the seam.", chunks=5)])))
    async with (
        _client(up) as client,
        client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        pieces = [t async for t in stream.text_stream]
        message = await stream.get_final_message()
    assert len(pieces) == 5 and "".join(pieces) == "Streaming through the seam."
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 12


async def test_streamed_bash_tool_use_in_many_fragments(up: Lane) -> None:
    command = {"command": "ls -la /tmp && echo 'done: \"ok\"'", "description": "List /tmp"}
    reply = Reply([TextBlock("Running it."), ToolUseBlock("Bash", command, fragment_size=3)])
    up.fake.set_default(Scenario(reply))
    fragments: list[str] = []
    async with (
        _client(up) as client,
        client.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream,
    ):
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                fragments.append(event.delta.partial_json)
        message = await stream.get_final_message()
    assert len([f for f in fragments if f]) >= len(orjson.dumps(command)) // 3
    assert [b.type for b in message.content] == ["text", "tool_use"]
    tool = message.content[1]
    assert tool.type == "tool_use" and tool.name == "Bash" and tool.input == command
    assert message.stop_reason == "tool_use"


async def test_thinking_with_signature(up: Lane) -> None:
    signature = "EqQBsig-contract"
    thinking = ThinkingBlock("The user wants a greeting.", signature=signature)
    up.fake.set_default(Scenario(Reply([thinking, TextBlock("Hello!")])))
    history: list[Any] = [
        *HELLO,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": thinking.thinking, "signature": signature},
                {"type": "text", "text": "Hello!"},
            ],
        },
        {"role": "user", "content": "Again."},
    ]
    async with _client(up) as client:
        if up.kind == "openai":
            before = len(up.model_requests())
            with pytest.raises(anthropic.BadRequestError) as info:
                await client.messages.create(model=MODEL, max_tokens=64, messages=history)
            body: Any = info.value.body
            assert body["error"]["type"] == "invalid_request_error"
            assert "signed thinking" in body["error"]["message"]
            assert "up" in body["error"]["message"]  # names the provider
            assert len(up.model_requests()) == before  # refused before any upstream call
            return
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
            message = await stream.get_final_message()
        block = message.content[0]
        assert block.type == "thinking" and block.signature == "EqQBsig-contract"
        assert block.thinking == thinking.thinking
        again = await client.messages.create(model=MODEL, max_tokens=64, messages=history)
    assert again.stop_reason == "end_turn"
    sent = orjson.loads(up.fake.messages_requests()[-1].body)  # type: ignore[attr-defined]
    assert sent["messages"][1]["content"][0]["signature"] == "EqQBsig-contract"


async def test_cache_usage_lands_in_ledger(up: Lane) -> None:
    usage = FakeUsage(
        input_tokens=40, output_tokens=9, cache_read_input_tokens=2048, cache_creation_5m=768
    )
    up.fake.set_default(Scenario(Reply([TextBlock("cached")], usage=usage)))
    async with (
        _client(up) as client,
        client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        message = await stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    assert message.usage.cache_read_input_tokens == 2048
    assert message.usage.cache_creation_input_tokens == 768
    assert (message.usage.input_tokens, message.usage.output_tokens) == (40, 9)
    row = await _row(up, request_id)
    assert (row["input_tokens"], row["output_tokens"]) == (40, 9)
    assert (row["cache_read_tokens"], row["cache_creation_tokens"]) == (2048, 768)
    assert row["status"] == 200 and row["streaming"] is True


_SKIP_HEADERS = {"host", "content-length", "connection", "accept-encoding", "authorization"}
_SKIP_HEADERS |= {"x-api-key", "content-type", "accept"}


async def test_claude_code_replay_accumulates(up: Lane) -> None:
    """A captured Claude Code turn through each provider; the SDK's own accumulator must
    turn the stream the gateway sends into the expected Message."""
    name = "10-tool-loop-turn1.json"
    headers, raw_body = fixture_request(name)
    body = orjson.loads(raw_body)
    assert (FIXTURES / name).exists() and body["stream"] is True
    up.fake.set_default(scenario_by_name("tool_bash"))
    sent_headers = {k: v for k, v in headers if k.lower() not in _SKIP_HEADERS}
    async with _client(up) as client:
        request = client.post(
            "/v1/messages?beta=true",
            body=body,
            options={"headers": sent_headers},
            cast_to=Message,
            stream=True,
            stream_cls=anthropic.AsyncStream[RawMessageStreamEvent],
        )
        async with AsyncMessageStreamManager(request) as stream:
            message = await asyncio.wait_for(stream.get_final_message(), 10)
    assert message.model == body["model"]
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[0].text == "I'll run that command."  # type: ignore[union-attr]
    tool = message.content[1]
    assert tool.type == "tool_use" and tool.name == "Bash"
    assert tool.input == {"command": "echo SLUICE_TOOL_MARKER", "description": "Run a command"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (25, 12)


async def test_count_tokens_where_the_provider_can(up: Lane) -> None:
    provider = up.gateway.server.app.services.router.providers["up"]
    if not provider.can_count_tokens(MODEL):
        # Bedrock and OpenAI: the router counts elsewhere or estimates (marked as such).
        assert up.kind in ("bedrock", "openai")
        return
    async with _client(up) as client:
        counted = await client.messages.count_tokens(model=MODEL, messages=HELLO)
    assert counted.input_tokens > 0
    sent = up.fake.requests[-1]
    assert sent.path.endswith(
        "/models/count-tokens:rawPredict" if up.kind == "vertex" else "/v1/messages/count_tokens"
    )
    assert orjson.loads(sent.body)["model"] == MODEL  # Vertex keeps it in the body


async def test_midstream_drop_ends_with_an_error_event(up: Lane) -> None:
    """The upstream's connection dies after the first events: the client has its 200 and
    some events, then an Anthropic `event: error`, never a silently truncated message."""
    reply = Reply([TextBlock("one two three four five six", chunks=6)])
    up.fake.set_default(Scenario(reply, fault=Fault(drop_after_events=4)))
    async with (
        _client(up) as client,
        client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        with pytest.raises(anthropic.APIStatusError) as info:
            async for _ in stream:
                pass
        request_id = stream.response.headers["request-id"]
    body: Any = info.value.body
    assert body["error"]["type"] in ("api_error", "overloaded_error")
    row = await _row(up, request_id)
    assert row["status"] == 200 and row["error_code"] == "provider_error"
