"""The real Claude Code CLI with an Anthropic primary that answers 529 (overloaded): the key's
fallback chain sends every request on to Bedrock, the session completes (a text turn, and a
tool loop that runs Bash and sends the tool_result back), and the ledger shows the fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.config.vk import FallbackConfig, VirtualKeyConfig
from sluice.testing import FakeAnthropic, Fault, Reply, Scenario, TextBlock, scenario_by_name
from sluice.testing.fake_bedrock import FakeBedrock

from claude_cli import ClaudeResult, run_claude
from lanes import provider_yaml
from support import Gateway, start_gateway

pytestmark = pytest.mark.e2e

# The model is pinned: each CLI release has its own default (2.1.332's, claude-opus-5-5, is in
# no lane's model map), and these tests are about the translation, not the default.
PRINT = ["--bare", "--disable-slash-commands", "--model", "claude-opus-4-8", "--print"]
FALLBACK = VirtualKeyConfig(
    fallback=FallbackConfig(chain=["anthropic-primary", "up"], on=["5xx", "timeout"])
)


@pytest.fixture
async def bedrock() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as server:
        yield server


@pytest.fixture
async def overloaded() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(Scenario(fault=Fault(status=529))) as server:
        yield server


@pytest.fixture
async def gateway(
    tmp_path: Path, overloaded: FakeAnthropic, bedrock: FakeBedrock
) -> AsyncIterator[Gateway]:
    gw = await start_gateway(
        tmp_path / "fallback.db",
        overloaded.url,
        provider_yaml=provider_yaml("bedrock", bedrock),
        key_config=FALLBACK,
    )
    try:
        yield gw
    finally:
        await gw.server.stop()


async def _claude(gateway: Gateway, tmp_path: Path, prompt: str, *extra: str) -> ClaudeResult:
    return await run_claude(
        [*PRINT, prompt, *extra],
        base_url=gateway.url,
        auth_token=gateway.key,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
    )


async def test_text_turn_completes_through_bedrock(
    gateway: Gateway, overloaded: FakeAnthropic, bedrock: FakeBedrock, tmp_path: Path
) -> None:
    text = "Served by the Bedrock fallback: periwinkle-5150"
    bedrock.script(Scenario(Reply([TextBlock(text, chunks=4)])))
    result = await _claude(gateway, tmp_path, "say hi")
    assert result.rc == 0, result.describe()
    assert text in result.stdout
    assert len(overloaded.messages_requests()) == 1 and len(bedrock.messages_requests()) == 1
    [row] = [r for r in await gateway.ledger_rows() if r["endpoint"] == "messages"]
    assert (row["provider"], row["status"], row["attempts"]) == ("up", 200, 2)
    assert row["fallback_path"] == "anthropic-primary:529 > up:200"


async def test_tool_loop_completes_through_bedrock(
    gateway: Gateway, overloaded: FakeAnthropic, bedrock: FakeBedrock, tmp_path: Path
) -> None:
    marker = tmp_path / "work" / "sluice-fallback-marker"
    done = "The marker file now exists."
    bedrock.script(
        scenario_by_name("tool_bash", bash_command=f"touch {marker}"),
        Scenario(Reply([TextBlock(done)])),
    )
    result = await _claude(gateway, tmp_path, "create the marker", "--allowedTools", "Bash")
    assert result.rc == 0, result.describe()
    assert done in result.stdout
    assert marker.exists(), "Claude Code did not run the Bash tool"
    _, second = bedrock.messages_requests()
    assert len(overloaded.messages_requests()) == 2  # each turn tried the primary first
    # The tool_result for the tool_use Bedrock streamed came back, through the fallback.
    assistant, user = second.json()["messages"][-2:]
    [tool_use] = [b for b in assistant["content"] if b["type"] == "tool_use"]
    assert tool_use["input"]["command"] == f"touch {marker}"
    results = [b for b in user["content"] if b.get("type") == "tool_result"]
    assert [b["tool_use_id"] for b in results] == [tool_use["id"]]
    rows = [r for r in await gateway.ledger_rows() if r["endpoint"] == "messages"]
    assert [r["stop_reason"] for r in rows] == ["tool_use", "end_turn"]
    assert {r["fallback_path"] for r in rows} == {"anthropic-primary:529 > up:200"}
    assert all(r["provider"] == "up" and r["attempts"] == 2 for r in rows)
