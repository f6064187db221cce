"""Claude Code's compaction through a tracing Sluice: `/compact` in `--print --resume` (2.1.332
sends it with `x-claude-code-request-class: compaction` and no prompt id). Its model calls are
spans of the session's turn, marked `sluice.request_class=compaction`; they open no turn of
their own, and the ledger and `spend --by request_class` count them apart."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from sluice.testing import FakeAnthropic, Reply, Scenario, TextBlock

from claude_cli import claude_version, run_claude
from otlp_receiver import OtlpReceiver
from support import Gateway

pytestmark = pytest.mark.e2e

MODEL = "claude-opus-4-8"


async def test_compaction_is_spans_of_the_sessions_turn(
    fake: FakeAnthropic, traced: Gateway, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    if claude_version() < (2, 1, 273):
        pytest.skip("measured: 2.1.197 sends no compaction request for /compact in --print")
    fake.set_default(Scenario(Reply([TextBlock("A short summary of the conversation.")])))
    session = str(uuid.uuid4())
    common = {
        "base_url": traced.url,
        "auth_token": traced.key,
        "cwd": tmp_path / "work",
        "home": tmp_path / "home",
        "extra_env": {"CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1"},
    }
    first = await run_claude(
        ["--print", "hello there", "--session-id", session, "--model", MODEL],
        **common,  # type: ignore[arg-type]
    )
    assert first.rc == 0, first.describe()
    compacted = await run_claude(
        ["--print", "/compact", "--resume", session, "--model", MODEL],
        **common,  # type: ignore[arg-type]
    )
    assert compacted.rc == 0, compacted.describe()
    classes = [r.header("x-claude-code-request-class") for r in fake.messages_requests()]
    assert classes[0] == "main" and "compaction" in classes, classes
    await traced.server.app.services.telemetry.flush()
    await receiver.wait_for(2 + classes.count("compaction"))

    chats = receiver.named("chat ")
    compactions = [c for c in chats if c.attributes.get("sluice.request_class") == "compaction"]
    mains = [c for c in chats if c.attributes.get("sluice.request_class") == "main"]
    assert len(compactions) == classes.count("compaction") and len(mains) == 1
    roots = receiver.latest("invoke_agent")
    assert len(roots) == 1, [r.name for r in roots]  # compaction opened no turn of its own
    [root] = roots
    assert {c.trace_id for c in chats} == {root.trace_id}
    assert {c.parent_span_id for c in chats} == {root.span_id}
    assert len({c.span_id for c in chats}) == len(chats)  # its own lane: no span id reused
    rows = [r for r in await traced.ledger_rows() if r["endpoint"] == "messages"]
    assert [r["request_class"] for r in rows] == classes
