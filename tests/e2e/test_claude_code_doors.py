"""The real Claude Code CLI in Bedrock mode and in Vertex mode, through Sluice's /bedrock and
/vertex/v1 doors, to a key whose provider is plain Anthropic and to a Bedrock or Vertex
provider: a text turn and a Bash tool loop, with the ledger naming the door."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sluice.testing import FakeAnthropic
from sluice.testing.scenarios import Reply, Scenario, TextBlock, scenario_by_name

from claude_cli import ClaudeResult, run_claude
from lanes import Lane, lane
from otlp_receiver import OtlpReceiver
from support import start_gateway

pytestmark = pytest.mark.e2e

PRINT = ["--bare", "--disable-slash-commands", "--print"]
# (door, provider kind): each door to plain Anthropic, and to its own cloud's provider.
CASES = [
    ("bedrock", "anthropic"),
    ("bedrock", "bedrock"),
    ("vertex", "anthropic"),
    ("vertex", "vertex"),
]
MODELS = {"bedrock": "us.anthropic.claude-sonnet-4-6", "vertex": "claude-sonnet-4-6"}


def _env(door: str, up: Lane) -> dict[str, str]:
    key = up.gateway.key
    if door == "bedrock":
        return {
            "CLAUDE_CODE_USE_BEDROCK": "1",
            "ANTHROPIC_BEDROCK_BASE_URL": f"{up.gateway.url}/bedrock",
            "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
            "AWS_REGION": "us-east-1",
            "AWS_BEARER_TOKEN_BEDROCK": key,
        }
    return {
        "CLAUDE_CODE_USE_VERTEX": "1",
        "ANTHROPIC_VERTEX_BASE_URL": f"{up.gateway.url}/vertex/v1",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "ANTHROPIC_VERTEX_PROJECT_ID": "team-project",
        "CLOUD_ML_REGION": "us-east5",
        "ANTHROPIC_AUTH_TOKEN": key,
    }


async def _claude(door: str, up: Lane, tmp_path: Path, prompt: str, *extra: str) -> ClaudeResult:
    return await run_claude(
        [*PRINT, "--model", MODELS[door], prompt, *extra],
        base_url="http://127.0.0.1:9",  # never used in these modes: nothing listens there
        cwd=tmp_path / "work",
        home=tmp_path / "home",
        extra_env=_env(door, up),
    )


def _messages_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["endpoint"] == "messages"]


@pytest.mark.parametrize(("door", "kind"), CASES)
async def test_text_turn_through_a_door(door: str, kind: str, tmp_path: Path) -> None:
    text = f"Hello from {kind} by the {door} door: periwinkle-4711"
    async with lane(kind, tmp_path) as up:
        up.fake.script(Scenario(Reply([TextBlock(text, chunks=4)])))
        result = await _claude(door, up, tmp_path, "say hi")
        rows = _messages_rows(await up.gateway.ledger_rows())
    assert result.rc == 0, result.describe()
    assert text in result.stdout
    [row] = rows
    assert (row["ingress"], row["provider"], row["status"]) == (door, "up", 200)
    assert (row["model_requested"], row["streaming"]) == ("claude-sonnet-4-6", True)
    assert row["output_tokens"] == 12


@pytest.mark.parametrize(("door", "kind"), CASES)
async def test_bash_tool_loop_through_a_door(door: str, kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "work" / "sluice-door-marker"
    done = "The marker file now exists."
    async with lane(kind, tmp_path) as up:
        up.fake.script(
            scenario_by_name("tool_bash", bash_command=f"touch {marker}"),
            Scenario(Reply([TextBlock(done)])),
        )
        result = await _claude(door, up, tmp_path, "create the marker", "--allowedTools", "Bash")
        bodies = [orjson.loads(r.body) for r in up.fake.messages_requests()]  # type: ignore[attr-defined]
        rows = _messages_rows(await up.gateway.ledger_rows())
    assert result.rc == 0, result.describe()
    assert done in result.stdout
    assert marker.exists(), "Claude Code did not run the Bash tool"
    assert [(r["ingress"], r["stop_reason"]) for r in rows] == [
        (door, "tool_use"),
        (door, "end_turn"),
    ]
    last = bodies[-1]["messages"][-1]
    assert any(b.get("type") == "tool_result" for b in last["content"])


@pytest.mark.parametrize("door", ["bedrock", "vertex"])
async def test_a_door_turn_is_one_trace_naming_its_door(door: str, tmp_path: Path) -> None:
    """Bedrock or Vertex mode, traced: the tool loop is one trace whose model calls carry
    ``sluice.ingress``, with the Bash tool between them."""
    marker = tmp_path / "work" / "sluice-traced-door-marker"
    async with FakeAnthropic() as fake, OtlpReceiver() as receiver:
        tracing = (
            f"tracing: {{enabled: true, otlp_endpoint: '{receiver.url}', flush_interval_ms: 20}}"
        )
        gateway = await start_gateway(tmp_path / "traced.db", fake.url, tracing)
        try:
            fake.script(
                scenario_by_name("tool_bash", bash_command=f"touch {marker}"),
                Scenario(Reply([TextBlock("Done.")])),
            )
            up = Lane("anthropic", fake, gateway)
            result = await _claude(
                door, up, tmp_path, "create the marker", "--allowedTools", "Bash"
            )
            assert result.rc == 0, result.describe()
            await gateway.server.app.services.telemetry.flush()
            spans = await receiver.wait_for(4)
        finally:
            await gateway.server.stop()
    assert marker.exists()
    assert len({s.trace_id for s in spans}) == 1, [(s.name, s.trace_id) for s in spans]
    chats = receiver.named("chat ")
    assert len(chats) == 2
    assert {c.attributes["sluice.ingress"] for c in chats} == {door}
    [bash] = receiver.named("execute_tool")
    assert bash.parent_span_id == min(chats, key=lambda s: s.start_ns).span_id


@pytest.mark.parametrize("kind", ["anthropic", "bedrock"])
async def test_bedrock_mode_with_the_cli_default_model(kind: str, tmp_path: Path) -> None:
    """No --model: each CLI release picks its own Bedrock id (2.1.332's is in no model map);
    it is served as the CLI named it, by Anthropic under its Anthropic name or by Bedrock
    as is."""
    text = "Default model, periwinkle-4711"
    async with lane(kind, tmp_path) as up:
        # A default, not a script: the fake Bedrock refuses a beta 2.1.332 sends with its
        # default model, and the raw lane lets Bedrock judge it; the CLI then retries
        # without betas, as it does against Bedrock itself.
        up.fake.set_default(Scenario(Reply([TextBlock(text)])))
        result = await run_claude(
            [*PRINT, "say hi"],
            base_url="http://127.0.0.1:9",
            cwd=tmp_path / "work",
            home=tmp_path / "home",
            extra_env=_env("bedrock", up),
        )
        rows = _messages_rows(await up.gateway.ledger_rows())
    assert result.rc == 0, result.describe()
    assert text in result.stdout
    assert (rows[-1]["ingress"], rows[-1]["status"]) == ("bedrock", 200)
    assert all(r["model_requested"] == rows[-1]["model_requested"] for r in rows)
