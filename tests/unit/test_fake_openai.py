"""The fake OpenAI upstream is faithful: the official openai SDK reads its streams (tool-call
fragments, the include_usage chunk with cached tokens) and its errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from sluice.testing.scenarios import FakeUsage, Fault, Reply, Scenario, TextBlock, ToolUseBlock

KEY = "sk-fake-openai"
REPLY = Reply(
    [TextBlock("Let me check."), ToolUseBlock("Bash", {"command": "ls -la"}, fragment_size=4)],
    usage=FakeUsage(input_tokens=10, output_tokens=5, cache_read_input_tokens=90),
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(Scenario(REPLY), api_key=KEY) as server:
        yield server


def _client(fake: FakeOpenAI, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key=key, max_retries=0)


async def test_stream_with_usage_and_tool_fragments(fake: FakeOpenAI) -> None:
    async with _client(fake) as client:
        stream = await client.chat.completions.create(
            model="gpt-4.1",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
        if tc.function
    )
    assert text == "Let me check." and args == '{"command":"ls -la"}'
    fragments = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(fragments) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert (usage.prompt_tokens, usage.completion_tokens) == (100, 5)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 90
    sent = fake.completions_requests()[-1].json()
    assert sent["stream_options"] == {"include_usage": True}


async def test_no_usage_chunk_without_include_usage(fake: FakeOpenAI) -> None:
    async with _client(fake) as client:
        stream = await client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [c async for c in stream]
    assert all(c.choices and c.usage is None for c in chunks)


async def test_non_streaming_and_errors(fake: FakeOpenAI) -> None:
    async with _client(fake) as client:
        done = await client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
        )
        assert done.choices[0].message.tool_calls is not None
        assert done.choices[0].message.tool_calls[0].function.name == "Bash"  # type: ignore[union-attr]
        fake.script(Scenario(fault=Fault(status=429, retry_after="1")))
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(
                model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.response.headers["retry-after"] == "1"
    async with _client(fake, key="wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
            )
