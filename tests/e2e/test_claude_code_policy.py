"""Tool policy with the real Claude Code CLI: a denied Bash call is refused and never run."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.config.vk import VirtualKeyConfig
from sluice.testing import (
    FakeAnthropic,
    Reply,
    Scenario,
    TextBlock,
    ToolUseBlock,
    scenario_by_name,
)

from claude_cli import run_claude
from support import Gateway

pytestmark = pytest.mark.e2e

PRINT = ["--bare", "--disable-slash-commands", "--print"]
DENY_BASH = VirtualKeyConfig.parse({"policy_rules": {"tools": {"deny": ["^Bash$"]}}})


@pytest.mark.parametrize("text_first", [True, False], ids=["after-text", "tool-first"])
async def test_denied_bash_is_refused_and_not_run(
    gateway: Gateway, fake: FakeAnthropic, tmp_path: Path, text_first: bool
) -> None:
    """Claude Code retries a stream that failed before any block completed without `stream`;
    when a text block completed first it reports the error frame as final. Either way the
    user sees the policy message, Bash never runs, and the upstream is called once."""
    minted = await gateway.mint(name="no-bash", principal="carol", config=DENY_BASH)
    marker = tmp_path / "MARKER"
    blocks = scenario_by_name("tool_bash", bash_command=f"touch {marker}").reply.blocks
    fake.set_default(Scenario(Reply(blocks if text_first else blocks[1:])))
    result = await run_claude(
        [*PRINT, "create the marker file", "--allowedTools", "Bash"],
        base_url=gateway.url,
        auth_token=minted.secret,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
        max_retries=None,  # Claude Code's defaults, including its non-streaming retry
    )
    message = "Tool 'Bash' is blocked by this key's policy (policy_rules.tools.deny: ^Bash$)"
    expected = f"API Error: {message}" if text_first else f"API Error: 403 {message}"
    assert expected in result.stdout, result.describe()
    assert result.rc != 0
    assert not marker.exists()
    assert len(fake.messages_requests()) == 1
    rows = [r for r in await gateway.ledger_rows() if r["vk_id"] == minted.key.id]
    shape = [(r["streaming"], r["status"], r["error_code"]) for r in rows]
    first = (True, 200, "tool_not_allowed")
    # tool-first: the non-streaming retry was refused from the remembered verdict.
    assert shape == ([first] if text_first else [first, (False, 403, "tool_not_allowed")])
    assert {r["policy_violation"] for r in rows} == {"policy_rules.tools.deny: ^Bash$"}
    assert rows[0]["input_tokens"] > 0  # usage consumed by the blocked call is recorded
    assert all(r["input_tokens"] == 0 and r["provider"] is None for r in rows[1:])


@pytest.mark.parametrize("reply", ["text", "tool_read"])
async def test_everything_else_keeps_working(
    gateway: Gateway, fake: FakeAnthropic, tmp_path: Path, reply: str
) -> None:
    minted = await gateway.mint(name="no-bash", config=DENY_BASH)
    if reply == "text":
        fake.set_default(Scenario(Reply([TextBlock("Plain answer, no tools involved.")])))
    else:
        target = tmp_path / "work" / "readme.txt"  # inside the project: no permission prompt
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("READ_ME_CONTENT_42\n")
        fake.script(Scenario(Reply([ToolUseBlock("Read", {"file_path": str(target)})])))
        fake.set_default(Scenario(Reply([TextBlock("Read it: done.")])))
    result = await run_claude(
        [*PRINT, "go"],
        base_url=gateway.url,
        auth_token=minted.secret,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
    )
    assert result.rc == 0, result.describe()
    if reply == "text":
        assert "Plain answer, no tools involved." in result.stdout
        assert len(fake.messages_requests()) == 1
    else:
        assert "Read it: done." in result.stdout
        requests = fake.messages_requests()
        assert len(requests) == 2
        last = requests[1].json()["messages"][-1]["content"][0]
        assert last["type"] == "tool_result" and "READ_ME_CONTENT_42" in str(last["content"])
