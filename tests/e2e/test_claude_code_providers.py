"""The real Claude Code CLI through Sluice to each translating provider's fake upstream
(Bedrock, Vertex, OpenAI-compatible): a text turn, and a tool loop that runs Bash and sends
the tool_result back through the translation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sluice.testing.scenarios import Reply, Scenario, TextBlock, scenario_by_name

from claude_cli import ClaudeResult, run_claude
from lanes import Lane, lane

pytestmark = pytest.mark.e2e

# The model is pinned: each CLI release has its own default (2.1.332's, claude-opus-5-5, is in
# no lane's model map), and these tests are about the translation, not the default.
PRINT = ["--bare", "--disable-slash-commands", "--model", "claude-opus-4-8", "--print"]
KINDS = ("bedrock", "vertex", "openai")


async def _claude(up: Lane, tmp_path: Path, prompt: str, *extra: str) -> ClaudeResult:
    return await run_claude(
        [*PRINT, prompt, *extra],
        base_url=up.gateway.url,
        auth_token=up.gateway.key,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
    )


def _bodies(up: Lane) -> list[Any]:
    return [orjson.loads(r.body) for r in up.fake.messages_requests()]  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
async def test_text_turn(kind: str, tmp_path: Path) -> None:
    text = f"Hello through {kind}: periwinkle-4711"
    async with lane(kind, tmp_path) as up:
        up.fake.script(Scenario(Reply([TextBlock(text, chunks=4)])))
        result = await _claude(up, tmp_path, "say hi")
        rows = await up.gateway.ledger_rows()
    assert result.rc == 0, result.describe()
    assert text in result.stdout
    [row] = [r for r in rows if r["endpoint"] == "messages"]
    assert (row["provider"], row["status"], row["stop_reason"]) == ("up", 200, "end_turn")
    assert row["streaming"] is True and row["output_tokens"] == 12


@pytest.mark.parametrize("kind", KINDS)
async def test_tool_loop_runs_bash(kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "work" / "sluice-tool-marker"
    done = "The marker file now exists."
    async with lane(kind, tmp_path) as up:
        up.fake.script(
            scenario_by_name("tool_bash", bash_command=f"touch {marker}"),
            Scenario(Reply([TextBlock(done)])),
        )
        result = await _claude(up, tmp_path, "create the marker", "--allowedTools", "Bash")
        first, second = _bodies(up)
        rows = await up.gateway.ledger_rows()
    assert result.rc == 0, result.describe()
    assert done in result.stdout
    assert marker.exists(), "Claude Code did not run the Bash tool"
    assert [r["stop_reason"] for r in rows] == ["tool_use", "end_turn"]
    if kind == "openai":
        # The tool call went out as tool_calls and came back as a tool message with its id.
        call = next(m for m in second["messages"] if m.get("tool_calls"))["tool_calls"][0]
        assert call["function"]["name"] == "Bash"
        assert orjson.loads(call["function"]["arguments"])["command"] == f"touch {marker}"
        tool = next(m for m in second["messages"] if m["role"] == "tool")
        assert tool["tool_call_id"] == call["id"]
        assert "x-anthropic-billing-header" not in orjson.dumps(first["messages"][0]).decode()
        return
    last = second["messages"][-1]
    results = [b for b in last["content"] if b.get("type") == "tool_result"]
    assistant = second["messages"][-2]
    [tool_use] = [b for b in assistant["content"] if b["type"] == "tool_use"]
    assert tool_use["input"]["command"] == f"touch {marker}"
    assert [b["tool_use_id"] for b in results] == [tool_use["id"]]
    assert "model" not in second
