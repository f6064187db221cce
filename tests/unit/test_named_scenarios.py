"""The named scenarios a newcomer tries with `sluice mock anthropic`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from typer.testing import CliRunner

from sluice.cli.main import app
from sluice.testing import SCENARIO_NAMES, FakeAnthropic
from sluice.testing.fake_anthropic import mock_upstream
from sluice.testing.named import DONE_TEXT
from sluice.testing.scenarios import tool_rounds_this_turn

USER = {"role": "user", "content": "list files"}


def tool_round(n: int) -> list[dict[str, Any]]:
    use = {"type": "tool_use", "id": f"t{n}", "name": "Bash", "input": {"command": "ls"}}
    result = {"type": "tool_result", "tool_use_id": f"t{n}", "content": "a.txt"}
    return [
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result, {"type": "text", "text": "<reminder>"}]},
    ]


def body(messages: list[dict[str, Any]], stream: bool = False) -> bytes:
    return orjson.dumps(
        {"model": "claude-sonnet-5", "max_tokens": 10, "stream": stream, "messages": messages}
    )


async def ask(fake: FakeAnthropic, messages: list[dict[str, Any]]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(fake.url + "/v1/messages", data=body(messages)) as r,
    ):
        return r.status, await r.json()


def test_rounds_count_only_this_turn() -> None:
    assert tool_rounds_this_turn({"messages": [USER]}) == 0
    assert tool_rounds_this_turn({"messages": [USER, *tool_round(1)]}) == 1
    two = [USER, *tool_round(1), *tool_round(2)]
    assert tool_rounds_this_turn({"messages": two}) == 2
    # A new user prompt after earlier tool rounds starts a new turn.
    assert (
        tool_rounds_this_turn({"messages": [*two, {"role": "assistant", "content": "ok"}, USER]})
        == 0
    )


@pytest.fixture
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[FakeAnthropic]:
    async with mock_upstream(request.param) as fake:
        yield fake


@pytest.mark.parametrize(
    ("upstream", "rounds"),
    [("tool_bash", 1), ("tool_read", 1), ("tool_denied", 1), ("tool_loop", 3)],
    indirect=["upstream"],
)
async def test_tool_scenarios_answer_the_tool_result_with_text(
    upstream: FakeAnthropic, rounds: int
) -> None:
    messages: list[dict[str, Any]] = [USER]
    for n in range(rounds):
        status, reply = await ask(upstream, messages)
        assert status == 200 and reply["stop_reason"] == "tool_use", (n, reply)
        messages += tool_round(n)
    status, reply = await ask(upstream, messages)
    assert status == 200 and reply["stop_reason"] == "end_turn"
    assert reply["content"] == [{"type": "text", "text": DONE_TEXT}]


@pytest.mark.parametrize("upstream", ["err529_then_ok"], indirect=True)
async def test_529_then_ok_fails_each_request_once(upstream: FakeAnthropic) -> None:
    assert (await ask(upstream, [USER]))[0] == 529
    assert (await ask(upstream, [USER]))[0] == 200
    other = [{"role": "user", "content": "something else"}]
    assert [(await ask(upstream, other))[0] for _ in range(2)] == [529, 200]


@pytest.mark.parametrize("upstream", ["thinking_long"], indirect=True)
async def test_long_thinking_is_long(upstream: FakeAnthropic) -> None:
    _status, reply = await ask(upstream, [USER])
    assert [b["type"] for b in reply["content"]] == ["thinking", "text"]
    assert len(reply["content"][0]["thinking"]) > 2000


def test_mock_help_lists_every_scenario() -> None:
    result = CliRunner().invoke(app, ["mock", "anthropic", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "..." not in result.output
    for name in SCENARIO_NAMES:
        assert f"{name}:" in result.output, name
