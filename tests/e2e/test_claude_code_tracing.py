"""The real Claude Code CLI through a tracing Sluice: one trace per turn, exported over OTLP/HTTP
to a real receiver, with the tool-call tree and every GenAI and LangWatch attribute."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from sluice.testing import FakeAnthropic, FakeUsage, Reply, Scenario, TextBlock
from sluice.testing.scenarios import ToolUseBlock

from claude_cli import run_claude
from otlp_receiver import OtlpReceiver
from support import Gateway

pytestmark = pytest.mark.e2e

PRINT = ["--bare", "--disable-slash-commands", "--print"]
USAGE_1 = FakeUsage(
    input_tokens=40, output_tokens=30, cache_read_input_tokens=1000, cache_creation_5m=200
)
USAGE_2 = FakeUsage(
    input_tokens=15, output_tokens=8, cache_read_input_tokens=1230, cache_creation_1h=64
)


async def test_claude_code_turn_is_one_trace_with_its_tool_tree(
    fake: FakeAnthropic, traced: Gateway, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    marker = tmp_path / "work" / "sluice-trace-marker"
    tool = ToolUseBlock("Bash", {"command": f"touch {marker}", "description": "Make a marker"})
    fake.script(
        Scenario(Reply(blocks=[TextBlock("I'll run that."), tool], usage=USAGE_1)),
        Scenario(Reply(blocks=[TextBlock("The marker exists.")], usage=USAGE_2)),
        Scenario(Reply(blocks=[TextBlock("Bye now.")])),
    )
    session = str(uuid.uuid4())
    common = {"base_url": traced.url, "cwd": tmp_path / "work", "home": tmp_path / "home"}

    result = await run_claude(
        [*PRINT, "create the marker", "--allowedTools", "Bash", "--session-id", session],
        auth_token=traced.key,
        **common,  # type: ignore[arg-type]
    )
    assert result.rc == 0, result.describe()
    assert marker.exists(), "Claude Code did not run the Bash tool"
    first, second = fake.messages_requests()
    telemetry = traced.server.app.services.telemetry
    await telemetry.flush()
    spans = await receiver.wait_for(4)

    # One trace for the turn: root, two model calls, the tool between them.
    assert len({s.trace_id for s in spans}) == 1, [(s.name, s.trace_id) for s in spans]
    [root] = receiver.latest("invoke_agent")
    chats = sorted(receiver.named("chat "), key=lambda s: s.start_ns)
    [bash] = receiver.named("execute_tool")
    assert root.name == "invoke_agent claude-code"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "claude-code"
    assert root.attributes["gen_ai.conversation.id"] == session
    assert root.parent_span_id == ""
    model = first.json()["model"]
    assert [c.name for c in chats] == [f"chat {model}", f"chat {model}"]
    assert {c.parent_span_id for c in chats} == {root.span_id}
    assert bash.name == "execute_tool Bash"
    assert bash.parent_span_id == chats[0].span_id
    assert chats[0].start_ns < bash.start_ns <= chats[0].end_ns <= bash.end_ns
    assert bash.end_ns == chats[1].start_ns
    assert root.start_ns <= chats[0].start_ns and root.end_ns >= chats[1].end_ns  # whole turn
    tool_use_id = f"toolu_fake_{fake.requests.index(first) + 1}_1"
    assert bash.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "Bash",
        "gen_ai.tool.call.id": tool_use_id,
        "gen_ai.tool.type": "function",
        "sluice.tool.is_error": False,
        "gen_ai.conversation.id": session,
        "langwatch.virtual_key_id": traced.minted.key.id,
        "langwatch.project_id": "web",
        "langwatch.principal_id": "alice",
    }
    assert bash.status_code == 0  # unset: the tool succeeded

    # Every model-call attribute, against the ledger and the fake's usage.
    rows = await traced.ledger_rows()
    for chat, got, row, usage, stop in zip(
        chats, (first, second), rows, (USAGE_1, USAGE_2), ("tool_use", "end_turn"), strict=True
    ):
        a = chat.attributes
        n = fake.requests.index(got) + 1
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "anthropic"
        assert a["gen_ai.request.model"] == model
        assert a["gen_ai.response.model"] == model  # the fake echoes the request's model
        assert a["gen_ai.response.id"] == f"msg_fake_{n}"
        assert a["gen_ai.response.finish_reasons"] == [stop]
        assert a["gen_ai.request.stream"] is True
        assert a["gen_ai.request.max_tokens"] == got.json()["max_tokens"]
        total = usage.input_tokens + usage.cache_read_input_tokens
        total += usage.cache_creation_input_tokens
        assert a["gen_ai.usage.input_tokens"] == total  # the total, cached included
        assert a["gen_ai.usage.output_tokens"] == usage.output_tokens
        assert a["gen_ai.usage.cache_read.input_tokens"] == usage.cache_read_input_tokens
        assert a["gen_ai.usage.cache_creation.input_tokens"] == usage.cache_creation_input_tokens
        assert a["gen_ai.usage.cache_write.input_tokens"] == usage.cache_creation_input_tokens
        assert a["gen_ai.conversation.id"] == session
        assert a["langwatch.virtual_key_id"] == traced.minted.key.id
        assert a["langwatch.project_id"] == "web"
        assert a["langwatch.principal_id"] == "alice"
        assert a["langwatch.gateway_request_id"] == row["request_id"]
        assert a["langwatch.model_provider_id"] == "anthropic-primary"
        assert a["langwatch.upstream_request_id"] == f"req_fake_{n}"
        assert row["cost_micros"] is not None
        assert a["langwatch.cost_usd"] == pytest.approx(row["cost_micros"] / 1e6)
        assert a["gen_ai.usage.cost"] == row["cost_micros"]
        assert a["langwatch.fallback.attempts_count"] == 1
        assert a["langwatch.budget.decision"] == "allowed"
        assert "langwatch.policy.violation" not in a  # none happened
        assert "error.type" not in a and chat.status_code == 0
        assert a["http.response.status_code"] == 200
        assert "gen_ai.input.messages" not in a  # content capture is off by default
        assert chat.kind == 3  # CLIENT
    assert chats[1].attributes["gen_ai.usage.cache_creation_1h.input_tokens"] == 64
    assert json.loads(chats[0].attributes["sluice.tool_call_starts"]) == {
        tool_use_id: bash.start_ns
    }

    # A second prompt in the same session is a new turn: a new trace.
    result = await run_claude(
        [*PRINT, "now say bye", "--resume", session],
        auth_token=traced.key,
        **common,  # type: ignore[arg-type]
    )
    assert result.rc == 0, result.describe()
    third = fake.messages_requests()[2]
    assert third.header("x-claude-code-session-id") == session
    await telemetry.flush()
    await receiver.wait_for(6)
    new = [s for s in receiver.spans if s.trace_id != root.trace_id]
    assert sorted(s.name for s in new) == [
        f"chat {third.json()['model']}",
        "invoke_agent claude-code",
    ]
    assert len({s.trace_id for s in new}) == 1
    assert all(s.attributes["gen_ai.conversation.id"] == session for s in new)
