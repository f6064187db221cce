"""The official anthropic SDK through the gateway: stream, create, count_tokens, models."""

from __future__ import annotations

import anthropic
import pytest

from sluice.testing import (
    FakeAnthropic,
    FakeUsage,
    Reply,
    Scenario,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)

from support import Gateway


def _client(gateway: Gateway, **kw: object) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url, max_retries=0, **kw)  # type: ignore[arg-type]


REPLY = Reply(
    [
        ThinkingBlock("Let me think about the weather.", signature="sig-abc123"),
        TextBlock("Checking the weather in Paris.", chunks=3),
        ToolUseBlock("get_weather", {"location": "Paris, FR", "unit": "c"}, fragment_size=5),
    ],
    usage=FakeUsage(input_tokens=50, output_tokens=30, cache_read_input_tokens=700),
)


async def test_sdk_stream_accumulates(gateway: Gateway, fake: FakeAnthropic) -> None:
    fake.set_default(Scenario(REPLY))
    async with (
        _client(gateway, api_key=gateway.key) as client,
        client.messages.stream(
            model="claude-sonnet-5",
            max_tokens=1024,
            messages=[{"role": "user", "content": "weather?"}],
        ) as stream,
    ):
        text = "".join([t async for t in stream.text_stream])
        message = await stream.get_final_message()
    assert text == "Checking the weather in Paris."
    kinds = [b.type for b in message.content]
    assert kinds == ["thinking", "text", "tool_use"]
    assert message.content[0].signature == "sig-abc123"  # type: ignore[union-attr]
    assert message.content[2].input == {"location": "Paris, FR", "unit": "c"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert message.usage.cache_read_input_tokens == 700
    assert message.usage.output_tokens == 30


async def test_sdk_create_with_auth_token(gateway: Gateway, fake: FakeAnthropic) -> None:
    fake.set_default(Scenario(REPLY))
    async with _client(gateway, auth_token=gateway.key) as client:
        raw = await client.messages.with_raw_response.create(
            model="claude-sonnet-5",
            max_tokens=1024,
            messages=[{"role": "user", "content": "weather?"}],
        )
        message = await raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert message._request_id == raw.headers["request-id"]
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.usage.input_tokens == 50


async def test_sdk_count_tokens_and_models(gateway: Gateway, fake: FakeAnthropic) -> None:
    async with _client(gateway, api_key=gateway.key) as client:
        counted = await client.messages.count_tokens(
            model="claude-opus-4-8", messages=[{"role": "user", "content": "hello there"}]
        )
        assert counted.input_tokens > 0
        assert counted.input_tokens == max(1, len(fake.requests[-1].body) // 4)
        page = await client.models.list(limit=2)
        ids = [m.id for m in page.data]
        assert ids == ["claude-opus-4-8", "claude-sonnet-5"]
        assert page.has_more is True
        all_ids = [m.id async for m in client.models.list(limit=2)]
        assert all_ids == ["claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5-20251001"]
        one = await client.models.retrieve("claude-haiku-4-5-20251001")
        assert one.display_name == "Claude Haiku 4.5"
        with pytest.raises(anthropic.NotFoundError):
            await client.models.retrieve("gpt-4o")


async def test_sdk_sees_errors_typed(gateway: Gateway, fake: FakeAnthropic) -> None:
    async with _client(gateway, api_key="lw_vk_live_bogus") as client:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await client.messages.create(
                model="claude-opus-4-8", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
    assert info.value.status_code == 401
    assert info.value.request_id is not None and info.value.request_id.startswith("req_")


async def test_models_openai_shape_for_openai_clients(gateway: Gateway) -> None:
    import openai

    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0
    ) as client:
        models = [m.id async for m in client.models.list()]
    assert models == ["claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5-20251001"]


async def test_models_filtered_by_key_config(gateway: Gateway, fake: FakeAnthropic) -> None:
    from sluice.config.vk import VirtualKeyConfig

    minted = await gateway.mint(config=VirtualKeyConfig(models_allowed=["claude-haiku-*"]))
    async with _client(gateway, api_key=minted.secret) as client:
        ids = [m.id async for m in client.models.list()]
    assert ids == ["claude-haiku-4-5-20251001"]
