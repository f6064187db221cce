"""The real Claude Code CLI against `sluice mock anthropic` scenarios, through a gateway.

A newcomer's first try: `sluice mock anthropic --scenario tool_bash`, a gateway in front, and
`claude -p "list files" --allowedTools Bash`. The tool scenarios must answer the tool_result
with text, so Claude Code's agent loop ends after a bounded number of requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.config.vk import VirtualKeyConfig
from sluice.testing.fake_anthropic import FakeAnthropic, mock_upstream

from claude_cli import run_claude
from support import Gateway, start_gateway

pytestmark = pytest.mark.e2e

PRINT = ["--bare", "--disable-slash-commands", "--print"]


@pytest.fixture
async def mocked(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[FakeAnthropic, Gateway]]:
    async with mock_upstream(request.param, bash_command="echo SLUICE_TOOL_MARKER") as fake:
        gw = await start_gateway(tmp_path / "sluice.db", fake.url)
        try:
            yield fake, gw
        finally:
            await gw.server.stop()


async def claude(gw: Gateway, tmp_path: Path, *args: str, max_retries: int | None = 0) -> str:
    result = await run_claude(
        [*PRINT, *args],
        base_url=gw.url,
        auth_token=gw.key,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
        timeout=90,
        max_retries=max_retries,
    )
    assert result.rc == 0, result.describe()
    return result.stdout


@pytest.mark.parametrize(
    ("mocked", "rounds"),
    [("tool_bash", 1), ("tool_denied", 1), ("tool_loop", 3)],
    indirect=["mocked"],
)
async def test_tool_scenarios_end_the_agent_loop(
    mocked: tuple[FakeAnthropic, Gateway], rounds: int, tmp_path: Path
) -> None:
    fake, gw = mocked
    out = await claude(gw, tmp_path, "list files", "--allowedTools", "Bash")
    assert "Done" in out
    posts = fake.messages_requests()
    # One request per tool round plus the closing one (and nothing like 880 of them).
    assert len(posts) == rounds + 1, [p.body[:200] for p in posts]
    assert b"SLUICE_TOOL_MARKER" in posts[-1].body  # the tool really ran: its output came back
    rows = await gw.ledger_rows()
    assert [r["stop_reason"] for r in rows] == ["tool_use"] * rounds + ["end_turn"]


@pytest.mark.parametrize("mocked", ["err529_then_ok"], indirect=True)
async def test_529_then_success_is_retried_by_claude_code(
    mocked: tuple[FakeAnthropic, Gateway], tmp_path: Path
) -> None:
    fake, gw = mocked
    out = await claude(gw, tmp_path, "hello", max_retries=2)
    assert "Hello" in out
    statuses = [r["status"] for r in await gw.ledger_rows()]
    assert statuses == [529, 200]
    assert fake.messages_requests()[0].body == fake.messages_requests()[1].body


async def test_denied_tool_scenario_under_a_deny_policy(tmp_path: Path) -> None:
    """`tool_denied` with `policy_rules.tools.deny: ["^Bash$"]`: Claude Code prints its own
    "Failed to authenticate" before the 403 (the README's Troubleshooting explains it), then
    Sluice's message naming the rule; Bash never runs."""
    deny = VirtualKeyConfig.parse({"policy_rules": {"tools": {"deny": ["^Bash$"]}}})
    marker = tmp_path / "MARKER"
    async with mock_upstream("tool_denied", bash_command=f"touch {marker}") as fake:
        gw = await start_gateway(tmp_path / "sluice.db", fake.url, key_config=deny)
        try:
            result = await run_claude(
                [*PRINT, "list files", "--allowedTools", "Bash"],
                base_url=gw.url,
                auth_token=gw.key,
                cwd=tmp_path / "work",
                home=tmp_path / "home",
                timeout=90,
                max_retries=None,
            )
        finally:
            await gw.server.stop()
    rule = "Tool 'Bash' is blocked by this key's policy (policy_rules.tools.deny: ^Bash$)"
    assert f"Failed to authenticate. API Error: 403 {rule}" in result.stdout, result.describe()
    assert result.rc != 0 and not marker.exists()
    assert len(fake.messages_requests()) == 1
