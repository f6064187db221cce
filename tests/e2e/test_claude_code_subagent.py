"""The real Claude Code CLI through a tracing Sluice: a subagent is a span tree inside the trace
of the turn that started it (with and without gateway hints), and two prompts of one session
are two traces of one conversation.

Measured (docs/claude-code.md): both 2.1.197 and 2.1.332 offer the subagent tool as ``Agent``,
and send ``x-claude-code-agent-id`` on a subagent's requests even without hints. 2.1.197 waits
for the subagent (its result is the tool_result); 2.1.332 runs it in the background (the
tool_result says "Async agent launched", and a later main request delivers a
``<task-notification>``; with hints, that request has a new prompt id).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from sluice.testing import FakeAnthropic, Reply, Scenario, TextBlock
from sluice.testing.fake_anthropic import RecordedRequest
from sluice.testing.scenarios import ToolUseBlock

from claude_cli import run_claude
from otlp_receiver import OtlpReceiver, Span
from support import Gateway

pytestmark = pytest.mark.e2e

PROMPT = "Say the word SUBMARKER and stop."
HINTS = {"CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1"}


def _subagent_scenario() -> Scenario:
    """Answers by content, so the order the CLI version sends its requests in does not matter:
    the main agent calls the Agent tool, the subagent (its prompt) answers with text, the main
    agent ends after the tool result or the background task's notification."""
    call = ToolUseBlock(
        "Agent", {"description": "Say a word", "prompt": PROMPT, "subagent_type": "general-purpose"}
    )
    return Scenario(
        Reply(blocks=[TextBlock("Delegating."), call]),
        after_tools=Reply(blocks=[TextBlock("The agent is on it.")]),
        routes=(
            ("<task-notification>", Reply(blocks=[TextBlock("All done.")])),
            (PROMPT, Reply(blocks=[TextBlock("SUBMARKER")])),
        ),
    )


def _has_tool_result(request: RecordedRequest) -> bool:
    last = request.json()["messages"][-1]
    content = last.get("content")
    return isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)


def _expected_type(requests: list[RecordedRequest], sub: RecordedRequest) -> str:
    """The subagent span's name: the hint header; else the Agent call's subagent_type, which
    the relay kept from the main agent's response (2.1.197 without hints reports it to the
    gateway nowhere else before the subagent is done)."""
    if (header := sub.header("x-claude-code-agent-type")) is not None:
        return header
    return "general-purpose"


def _by_request(spans: list[Span]) -> dict[str, Span]:
    return {s.attributes["langwatch.gateway_request_id"]: s for s in spans}  # type: ignore[misc]


@pytest.mark.parametrize("hints", [False, True], ids=["no-hints", "hints"])
async def test_subagent_is_an_invoke_agent_tree_in_its_turns_trace(
    fake: FakeAnthropic, traced: Gateway, receiver: OtlpReceiver, tmp_path: Path, hints: bool
) -> None:
    fake.script(*[_subagent_scenario()] * 8)
    session = str(uuid.uuid4())
    result = await run_claude(
        ["--print", "delegate please", "--allowedTools", "Agent", "--session-id", session],
        auth_token=traced.key,
        base_url=traced.url,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
        extra_env=HINTS if hints else {},
    )
    assert result.rc == 0, result.describe()
    requests = fake.messages_requests()
    tools = {t["name"] for t in requests[0].json()["tools"]}
    assert "Agent" in tools, f"the CLI offers no Agent tool: {sorted(tools)}"
    [sub] = [r for r in requests if r.header("x-claude-code-agent-id")]
    assert PROMPT in str(sub.json()["messages"][0]["content"])
    agent_id = sub.header("x-claude-code-agent-id")
    mains = [r for r in requests if r is not sub]

    telemetry = traced.server.app.services.telemetry
    await telemetry.flush()
    await receiver.wait_for(len(requests) + 3, timeout=30)  # every chat, the Agent tool, two roots
    rows = {row["request_id"]: row for row in await traced.ledger_rows()}
    chats = _by_request(receiver.named("chat "))
    assert len(chats) == len(requests)
    sub_row = next(r for r in rows.values() if r["agent_id"] == agent_id)
    sub_chat = chats[sub_row["request_id"]]
    trace = sub_chat.trace_id

    # The subagent: invoke_agent <type> under the turn's root, its chat under that.
    [main_root] = [s for s in receiver.latest("invoke_agent claude-code") if s.trace_id == trace]
    [sub_root] = [
        s for s in receiver.latest("invoke_agent") if s.span_id == sub_chat.parent_span_id
    ]
    assert sub_root.trace_id == trace
    assert sub_root.name == f"invoke_agent {_expected_type(requests, sub)}"
    assert sub_root.parent_span_id == main_root.span_id
    assert main_root.parent_span_id == ""
    assert sub_root.attributes["gen_ai.conversation.id"] == session

    # The turn's main-agent calls are in that trace (with hints, 2.1.332's notification
    # request is a prompt of its own: its own trace), and the Agent tool hangs under the call
    # that asked for it.
    prompt_id = requests[0].header("x-claude-code-prompt-id")
    in_turn = [r for r in mains if r.header("x-claude-code-prompt-id") == prompt_id]
    main_rows = [r for r in rows.values() if r["agent_id"] is None]
    assert len(main_rows) == len(mains)
    turn_chats = [s for s in chats.values() if s.trace_id == trace and s is not sub_chat]
    assert len(turn_chats) == len(in_turn)
    assert {s.parent_span_id for s in turn_chats} == {main_root.span_id}
    [tool] = receiver.named("execute_tool")
    assert tool.name == "execute_tool Agent" and tool.trace_id == trace
    assert tool.parent_span_id in {s.span_id for s in turn_chats}
    prompts = {r.header("x-claude-code-prompt-id") for r in requests}
    assert len({s.trace_id for s in receiver.spans}) == len(prompts)  # one per prompt
    assert all(s.attributes["gen_ai.conversation.id"] == session for s in receiver.spans)

    # The ledger: the subagent's row carries its agent id (sent with or without hints); the
    # request class comes with the hint headers only.
    assert sub_row["request_class"] == sub.header("x-claude-code-request-class")
    assert all(
        r["request_class"] == m.header("x-claude-code-request-class")
        for r, m in zip(sorted(main_rows, key=lambda r: r["created_at"]), mains, strict=True)
    )
    if sub.header("x-claude-code-request-class") is not None:
        assert sub_row["request_class"] == "subagent"


@pytest.mark.parametrize("hints", [False, True], ids=["no-hints", "hints"])
async def test_two_prompts_of_a_session_are_two_traces_of_one_conversation(
    fake: FakeAnthropic, traced: Gateway, receiver: OtlpReceiver, tmp_path: Path, hints: bool
) -> None:
    fake.script(
        Scenario(Reply(blocks=[TextBlock("Hi.")])), Scenario(Reply(blocks=[TextBlock("Bye.")]))
    )
    session = str(uuid.uuid4())
    common = {
        "auth_token": traced.key,
        "base_url": traced.url,
        "cwd": tmp_path / "work",
        "home": tmp_path / "home",
        "extra_env": HINTS if hints else {},
    }
    base = ["--bare", "--disable-slash-commands", "--print"]
    first = await run_claude([*base, "say hi", "--session-id", session], **common)  # type: ignore[arg-type]
    assert first.rc == 0, first.describe()
    second = await run_claude([*base, "now say bye", "--resume", session], **common)  # type: ignore[arg-type]
    assert second.rc == 0, second.describe()
    one, two = fake.messages_requests()
    assert (
        one.header("x-claude-code-session-id") == two.header("x-claude-code-session-id") == session
    )
    assert len(two.json()["messages"]) > len(one.json()["messages"])  # the same conversation

    await traced.server.app.services.telemetry.flush()
    await receiver.wait_for(4, timeout=30)
    roots = receiver.latest("invoke_agent")
    chats = receiver.named("chat ")
    assert len(roots) == 2 and len(chats) == 2
    assert len({s.trace_id for s in receiver.spans}) == 2
    assert {c.trace_id for c in chats} == {r.trace_id for r in roots}
    for chat in chats:
        [root] = [r for r in roots if r.trace_id == chat.trace_id]
        assert chat.parent_span_id == root.span_id
    assert {s.attributes["gen_ai.conversation.id"] for s in receiver.spans} == {session}
