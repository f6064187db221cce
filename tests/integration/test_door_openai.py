"""The OpenAI Chat Completions door (/v1/chat/completions): the official openai SDK, sync and
async, streaming, tools and parallel tool calls, through every provider kind, under the
same keys, budgets and policy as the Messages door."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest

from sluice.config.vk import VirtualKeyConfig
from sluice.testing import Reply, Scenario, TextBlock, ToolUseBlock
from sluice.testing.scenarios import FakeUsage

from lanes import KINDS, MODEL, lane
from support import Gateway

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
TWO_CALLS = Reply(
    [
        TextBlock("Checking both.", chunks=2),
        ToolUseBlock("get_weather", {"city": "Paris"}, fragment_size=4),
        ToolUseBlock("get_weather", {"city": "Oslo"}, fragment_size=4),
    ],
    usage=FakeUsage(input_tokens=30, output_tokens=20, cache_read_input_tokens=500),
)


def _async(gw: Gateway, key: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key or gw.key, base_url=f"{gw.url}/v1", max_retries=0)


@pytest.mark.parametrize("kind", KINDS)
async def test_chat_create_and_stream_with_parallel_tools(kind: str, tmp_path: Path) -> None:
    async with lane(kind, tmp_path) as ln:
        ln.fake.set_default(Scenario(TWO_CALLS))  # type: ignore[attr-defined]
        messages = [{"role": "user", "content": "weather in Paris and Oslo?"}]
        async with _async(ln.gateway) as client:
            made = await client.chat.completions.create(
                model=MODEL,
                messages=messages,
                tools=TOOLS,  # type: ignore[arg-type]
            )
            async with client.chat.completions.stream(
                model=MODEL,
                messages=messages,  # type: ignore[arg-type]
                tools=TOOLS,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            ) as stream:
                streamed = await stream.get_final_completion()
        for completion in (made, streamed):
            choice = completion.choices[0]
            assert choice.finish_reason == "tool_calls"
            assert choice.message.content == "Checking both."
            calls = choice.message.tool_calls or []
            assert [json.loads(c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
                {"city": "Paris"},
                {"city": "Oslo"},
            ]
            assert completion.model == MODEL
        usage = made.usage
        assert usage is not None and usage.completion_tokens == 20
        assert usage.prompt_tokens == 530  # OpenAI counts cached input in prompt tokens
        if kind != "openai":  # an OpenAI upstream reports no cache reads to translate
            assert usage.prompt_tokens_details is not None
            assert usage.prompt_tokens_details.cached_tokens == 500
        rows = await ln.gateway.ledger_rows()
        assert [(r["ingress"], r["status"], r["streaming"]) for r in rows] == [
            ("openai", 200, False),
            ("openai", 200, True),
        ]
        assert all(r["output_tokens"] == 20 for r in rows)


async def test_chat_sync_client_and_tool_results(tmp_path: Path) -> None:
    async with lane("anthropic", tmp_path) as ln:
        ln.fake.set_default(Scenario(Reply([TextBlock("It is sunny.")])))  # type: ignore[attr-defined]
        client = openai.OpenAI(api_key=ln.gateway.key, base_url=f"{ln.gateway.url}/v1")
        history = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]
        completion = await asyncio.to_thread(
            client.chat.completions.create, model=MODEL, messages=history, tools=TOOLS
        )
        client.close()
        assert completion.choices[0].message.content == "It is sunny."
        assert completion.choices[0].finish_reason == "stop"
        sent = json.loads(ln.model_requests()[-1].body)  # type: ignore[attr-defined]
        assert sent["system"] == "Be brief."
        assert sent["messages"][-1]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": "call_1",
            "content": "sunny",
        }


async def test_chat_errors_in_openai_shape(tmp_path: Path) -> None:
    async with lane("anthropic", tmp_path) as ln:
        async with _async(ln.gateway, key="sk-lw-not-a-key") as client:
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "x"}]
                )
        async with _async(ln.gateway) as client:
            with pytest.raises(openai.BadRequestError) as refused:
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "x"}], n=2
                )
            assert refused.value.param == "n"
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(
                    model="gpt-nope", messages=[{"role": "user", "content": "x"}]
                )


async def test_chat_door_keeps_policy_and_budgets(tmp_path: Path) -> None:
    async with lane("anthropic", tmp_path) as ln:
        denied = await ln.gateway.mint(
            name="no-weather",
            config=VirtualKeyConfig(
                providers_allowed=["up"],
                policy_rules={"tools": {"deny": ["^get_weather$"], "mode": "reject_declared"}},  # type: ignore[arg-type]
            ),
        )
        async with _async(ln.gateway, key=denied.secret) as client:
            with pytest.raises(openai.PermissionDeniedError) as refused:
                await client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "x"}],
                    tools=TOOLS,  # type: ignore[arg-type]
                )
        assert "get_weather" in str(refused.value)
        rows = await ln.gateway.ledger_rows()
        assert rows[-1]["ingress"] == "openai" and rows[-1]["policy_violation"]
