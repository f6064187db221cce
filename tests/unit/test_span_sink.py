"""The gateway side of the span sink: a buffer bounded by requests and by captured bytes, and
finished requests that survive the hand-over to the sink process (msgspec JSON) intact."""

from __future__ import annotations

import msgspec

from sluice.base.settlement import Settlement
from sluice.config.models import TracingConfig
from sluice.core.context import RequestContext
from sluice.telemetry.sink import RECORDS, SpanSink
from sluice.telemetry.spans import Finished, chat_span
from sluice.telemetry.turns import detect_turn


def finished(content_bytes: int, capture: bool = True) -> Finished:
    text = "x" * content_bytes
    raw = msgspec.Raw(msgspec.json.encode([{"role": "user", "content": text}]))
    ctx = RequestContext("req_1", "messages", "/v1/messages", "", [], 0.0, 0)
    ctx.messages_raw = raw
    ctx.model_requested = ctx.model_sent = "claude-sonnet-4-6"
    turn = detect_turn(raw, "s1", ctx.request_id)
    settled = Settlement(
        request_id="req_1",
        created_at=0,
        endpoint="messages",
        model_requested="claude-sonnet-4-6",
        model_sent="claude-sonnet-4-6",
        cost_micros=12,
        budget_warnings=("project:85",),
        policy_violation="policy_rules.tools.deny: ^Bash$",
    )
    return Finished.of(ctx, settled, turn, "s1", "claude-code", capture)


def test_buffer_is_bounded_by_requests_and_by_captured_bytes() -> None:
    by_count = SpanSink(TracingConfig(enabled=True, queue_size=16), None, {})
    assert all(by_count.offer(finished(10, capture=False)) for _ in range(16))
    assert not by_count.offer(finished(10, capture=False))
    assert by_count.waiting == 16

    mib = 1024 * 1024
    by_bytes = SpanSink(TracingConfig(enabled=True, queue_bytes=mib), None, {})
    assert by_bytes.offer(finished(mib // 2))
    assert not by_bytes.offer(finished(mib // 2))  # the second would pass 1 MiB
    assert by_bytes.offer(finished(10, capture=False))  # no content: no bytes held
    assert by_bytes.waiting == 2


def tool_loop(result_bytes: int, capture: bool) -> Finished:
    """A request that brings back one tool result of ``result_bytes``."""
    messages = [
        {"role": "user", "content": "read it"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "tu_1", "name": "Read", "input": {"p": "a"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "tu_1", "content": "x" * result_bytes}
            ],
        },
    ]
    raw = msgspec.Raw(msgspec.json.encode(messages))
    ctx = RequestContext("req_2", "messages", "/v1/messages", "", [], 0.0, 0)
    ctx.messages_raw = raw
    turn = detect_turn(raw, "s1", ctx.request_id)
    assert turn.content_size > result_bytes  # the turn reads the result (subagents need it)
    settled = Settlement(request_id="req_2", created_at=0, endpoint="messages")
    return Finished.of(ctx, settled, turn, "s1", "claude-code", capture)


def test_tool_results_are_handed_over_only_when_captured_and_count_as_held_bytes() -> None:
    mib = 1024 * 1024
    bare = tool_loop(mib, capture=False)
    (result,) = bare.turn.tool_results
    assert (result.tool_use_id, result.name, result.arguments, result.result) == (
        "tu_1",
        "Read",
        None,
        None,
    )
    assert bare.size == 0
    assert len(RECORDS.encode([bare])) < 4096  # not the megabyte, base64-encoded

    captured = tool_loop(mib, capture=True)
    assert captured.turn.tool_results[0].result is not None
    assert captured.size > 2 * mib  # the messages and the result both
    sink = SpanSink(TracingConfig(enabled=True, queue_bytes=4 * mib), None, {})
    assert sink.offer(captured)
    assert not sink.offer(tool_loop(mib, capture=True))  # would pass 4 MiB
    assert sink.offer(bare)


def test_a_finished_request_survives_the_hand_over() -> None:
    record = finished(100)
    (copy,) = msgspec.json.decode(RECORDS.encode([record]), type=list[Finished])
    assert copy == record  # 128-bit trace ids, bytes, the nested turn and usage included
    original = chat_span(record, record.turn, "s1", "claude-code", True)
    rebuilt = chat_span(copy, copy.turn, "s1", "claude-code", True)
    assert rebuilt == original
    assert "gen_ai.input.messages" in rebuilt.attributes
