"""The OpenAI Chat Completions door (/v1/chat/completions): the official openai SDK, sync and
async, streaming, tools and parallel tool calls, through every provider kind, under the
same keys, budgets and policy as the Messages door."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import openai
import pytest

from sluice.config.vk import VirtualKeyConfig
from sluice.testing import Reply, Scenario, TextBlock, ToolUseBlock
from sluice.testing.fake_openai import FakeOpenAI
from sluice.testing.scenarios import FakeUsage

from lanes import KINDS, MODEL, OPENAI_KEY, lane
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
            # The raw lane answers with the OpenAI upstream's own model id, untranslated.
            assert completion.model == ("gpt-4.1" if kind == "openai" else MODEL)
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


async def test_raw_openai_lane_relays_the_answer_untranslated(tmp_path: Path) -> None:
    """OpenAI door to an OpenAI-compatible provider: the client's body goes as it is (model
    mapped, usage asked for when streaming), and the upstream's answer comes back byte for
    byte, streamed or whole, while the ledger still reads its usage."""
    body = (
        b'{ "messages":[{"role":"user","content":"hi \\u00e9"}], "model":"claude-sonnet-4-6",'
        b'"stream":true,"temperature":0.5 }'
    )
    async with lane("openai", tmp_path) as ln:
        ln.fake.set_default(Scenario(TWO_CALLS))  # type: ignore[attr-defined]
        auth = {"authorization": f"Bearer {ln.gateway.key}", "content-type": "application/json"}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{ln.gateway.url}/v1/chat/completions", data=body, headers=auth
            ) as response:
                assert response.status == 200
                relayed = await response.read()
            [sent] = ln.model_requests()
            expected = (
                b'{"model":"gpt-4.1","stream_options":{"include_usage":true},'
                b'"messages":[{"role":"user","content":"hi \\u00e9"}],"stream":true,'
                b'"temperature":0.5}'  # only the separators between members are rewritten
            )
            assert sent.body == expected  # type: ignore[attr-defined]
            async with FakeOpenAI(api_key=OPENAI_KEY) as twin:  # answers its first alike
                twin.set_default(Scenario(TWO_CALLS))
                url = f"{twin.base_url}/chat/completions"
                headers = {"authorization": f"Bearer {OPENAI_KEY}"}
                async with http.post(url, data=expected, headers=headers) as direct:
                    assert relayed == await direct.read()
        [row] = await ln.gateway.ledger_rows()
        assert (row["ingress"], row["provider"], row["stop_reason"]) == ("openai", "up", "tool_use")
        assert row["output_tokens"] == 20


async def test_raw_openai_lane_still_blocks_a_denied_tool_call(tmp_path: Path) -> None:
    """The raw lane's answer is untranslated, but the guard reads a translated copy: a denied
    tool call ends the stream with an error in OpenAI's shape, and the call never arrives."""
    async with lane("openai", tmp_path) as ln:
        ln.fake.set_default(Scenario(TWO_CALLS))  # type: ignore[attr-defined]
        guarded = await ln.gateway.mint(
            name="guarded",
            config=VirtualKeyConfig(
                providers_allowed=["up"],
                policy_rules={"tools": {"deny": ["^get_weather$"]}},  # type: ignore[arg-type]
            ),
        )
        async with _async(ln.gateway, key=guarded.secret) as client:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "weather?"}],
                tools=TOOLS,  # type: ignore[arg-type]
                stream=True,
            )
            calls = []
            with pytest.raises(openai.APIError) as ended:
                async for chunk in stream:
                    calls += chunk.choices[0].delta.tool_calls or [] if chunk.choices else []
        assert "get_weather" in str(ended.value)
        assert not calls  # withheld before the client saw the call
        [row] = await ln.gateway.ledger_rows()
        assert row["policy_violation"] and row["ingress"] == "openai"
