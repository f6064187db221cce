"""Spans (OTel GenAI semantic conventions) from a finished request: pure, no IO.

``Finished`` is what the request path hands over: its ``Settlement`` (the budget decision and
policy violation included) and a handful of references, copied in a few microseconds.
Everything else (turn detection, attributes, content) happens here, later, in the telemetry
worker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.base.settlement import Settlement
from sluice.base.usage import ResponseFacts
from sluice.core.context import RequestContext
from sluice.telemetry.turns import Turn, opening_messages, span_id

AttrValue = str | bool | int | float | Sequence[str]

# gen_ai.provider.name's well-known values, by Sluice provider kind.
PROVIDER_NAMES = {
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "vertex": "gcp.vertex_ai",
    "openai": "openai",
}


@dataclass(frozen=True, slots=True)
class Finished:
    """One finished ``/v1/messages`` request, as the telemetry worker needs it: its
    settlement, and what only spans use (exact times, the turn, captured content)."""

    settlement: Settlement
    wall_offset_ns: int  # wall-clock ns = wall_offset_ns + monotonic ns
    started: float  # monotonic seconds
    ended: float
    turn: Turn
    session: str | None
    agent: str
    messages_json: bytes | None  # the messages, only when content may be captured
    max_tokens: int | None
    facts: ResponseFacts  # monotonic first-token and tool-call times, response id and model

    @classmethod
    def of(
        cls,
        ctx: RequestContext,
        settlement: Settlement,
        turn: Turn,
        session: str | None,
        agent: str,
        capture: bool,
    ) -> Finished:
        now = time.perf_counter()
        return cls(
            settlement,
            time.time_ns() - int(now * 1e9),
            ctx.started,
            now,
            turn if capture else turn.without_content(),
            session,
            agent,
            bytes(ctx.messages_raw) if capture else None,
            ctx.max_tokens,
            ctx.facts,
        )

    @property
    def request_id(self) -> str:
        return self.settlement.request_id

    def wall_ns(self, monotonic: float) -> int:
        return self.wall_offset_ns + int(monotonic * 1e9)

    @property
    def size(self) -> int:
        """Bytes this record keeps alive: the request's messages and its tool calls' content,
        when capturing (without, the turn carries none: ``Finished.of``)."""
        held = len(self.messages_json) if self.messages_json is not None else 0
        return held + self.turn.content_size


@dataclass(slots=True)
class SpanRecord:
    """A span ready for the exporter and the local store."""

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    kind: str  # client | internal
    start_ns: int
    end_ns: int
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    error: str | None = None
    # For the local store's columns (listing and filtering without parsing attributes).
    session_id: str | None = None
    key_id: str | None = None
    project: str | None = None
    agent: str | None = None
    request_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int | None = None

    @property
    def trace_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_hex(self) -> str:
        return f"{self.span_id:016x}"


def _common(rec: Finished, session: str | None) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {}
    if session:
        attrs["gen_ai.conversation.id"] = session
    settled = rec.settlement
    for name, value in (
        ("langwatch.virtual_key_id", settled.vk_id),
        ("langwatch.project_id", settled.project),
        ("langwatch.principal_id", settled.principal),
    ):
        if value is not None:
            attrs[name] = value
    return attrs


def _span(
    rec: Finished,
    session: str | None,
    agent: str,
    *,
    ids: tuple[int, int, int | None],
    name: str,
    kind: str,
    start_ns: int,
    end_ns: int,
    attrs: dict[str, AttrValue],
    error: str | None = None,
) -> SpanRecord:
    """A span of this request; ``ids``: (trace, span, parent)."""
    settled = rec.settlement
    return SpanRecord(
        ids[0],
        ids[1],
        ids[2],
        name,
        kind,
        start_ns,
        end_ns,
        attrs,
        error,
        session,
        settled.vk_id,
        settled.project,
        agent,
        settled.request_id,
    )


def chat_span(
    rec: Finished, turn: Turn, session: str | None, agent: str, capture: bool
) -> SpanRecord:
    settled, usage = rec.settlement, rec.facts.usage
    model = settled.model_sent or settled.model_requested or "unknown"
    attrs = _chat_attributes(rec, model, session)
    attrs.update(_usage_attributes(rec))
    error = settled.error_code  # the response's error, or a stream's error event
    if error is None and settled.status >= 400:
        error = str(settled.status)
    if error is not None:
        attrs["error.type"] = error
    if capture:
        attrs["gen_ai.input.messages"] = orjson.dumps(
            [_semconv_message(m) for m in opening_messages(rec.messages_json, turn.opening_index)]
        ).decode()
    span = _span(
        rec,
        session,
        agent,
        ids=(turn.trace_id, _chat_id(turn, settled, failed=error is not None), turn.root_span_id),
        name=f"chat {model}",
        kind="client",
        start_ns=rec.wall_ns(rec.started),
        end_ns=rec.wall_ns(rec.ended),
        attrs=attrs,
        error=error,
    )
    span.input_tokens = usage.total_input_tokens
    span.output_tokens = usage.output_tokens
    span.cost_micros = settled.cost_micros
    return span


def _chat_id(turn: Turn, settled: Settlement, *, failed: bool) -> int:
    """A failed attempt keeps a span of its own: Claude Code re-sends the same messages (its
    non-streaming retry after a mid-stream error), whose span would otherwise replace it. The
    successful attempt has the id a later request finds its tool calls' parent by."""
    if not failed:
        return turn.chat_span_id
    count = str(turn.message_count).encode()
    return span_id(turn.turn_key, b"chat", count, b"failed", settled.request_id.encode())


def _chat_attributes(rec: Finished, model: str, session: str | None) -> dict[str, AttrValue]:
    settled, facts = rec.settlement, rec.facts
    kind = settled.provider_kind or ""
    cost = settled.cost_micros
    attrs: dict[str, AttrValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER_NAMES.get(kind, kind) or "unknown",
        "gen_ai.request.model": model,
        "gen_ai.request.stream": settled.streaming,
        **_common(rec, session),
        "langwatch.gateway_request_id": settled.request_id,
        "langwatch.fallback.attempts_count": settled.attempts,
        "langwatch.budget.decision": settled.budget_decision,
        "http.response.status_code": settled.status,
        "sluice.ingress": settled.ingress,  # the door: anthropic | bedrock | vertex | openai
    }
    if settled.request_class is not None:  # Claude Code's hint: main, subagent, compaction, ...
        attrs["sluice.request_class"] = settled.request_class
    optional: dict[str, AttrValue | None] = {
        "gen_ai.request.max_tokens": rec.max_tokens,
        "langwatch.requested_model": settled.model_requested,
        "langwatch.model_provider_id": settled.provider,
        "gen_ai.response.model": facts.response_model,
        "gen_ai.response.id": facts.response_id,
        "langwatch.upstream_request_id": settled.upstream_request_id,
        "langwatch.policy.violation": settled.policy_violation,
        "langwatch.cost_usd": None if cost is None else cost / 1e6,
        "gen_ai.usage.cost": cost,
    }
    attrs.update({k: v for k, v in optional.items() if v is not None})
    if facts.stop_reason:
        attrs["gen_ai.response.finish_reasons"] = [facts.stop_reason]
    if facts.first_token_at is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = max(0.0, facts.first_token_at - rec.started)
    return attrs


def _usage_attributes(rec: Finished) -> dict[str, AttrValue]:
    facts, usage = rec.facts, rec.facts.usage
    attrs: dict[str, AttrValue] = {}
    if usage.seen:
        attrs["gen_ai.usage.input_tokens"] = usage.total_input_tokens  # incl. cached, per semconv
        attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
        attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
        attrs["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_creation_tokens
        attrs["gen_ai.usage.cache_write.input_tokens"] = usage.cache_creation_tokens
        if usage.cache_creation_1h_tokens:
            attrs["gen_ai.usage.cache_creation_1h.input_tokens"] = usage.cache_creation_1h_tokens
    if facts.tool_calls:
        # Lets a replica serving the next request start the tool span right (shared store).
        attrs["sluice.tool_call_starts"] = orjson.dumps(tool_call_starts(rec)).decode()
    return attrs


def root_span(rec: Finished, turn: Turn, session: str | None, agent: str) -> SpanRecord:
    """Emitted once per turn, by the request that opens it, spanning that request."""
    attrs: dict[str, AttrValue] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent,
        **_common(rec, session),
        "langwatch.gateway_request_id": rec.request_id,
    }
    return _span(
        rec,
        session,
        agent,
        ids=(turn.trace_id, turn.root_span_id, turn.caller_span_id),
        name=f"invoke_agent {agent}",
        kind="internal",
        start_ns=rec.wall_ns(rec.started),
        end_ns=rec.wall_ns(rec.ended),
        attrs=attrs,
    )


def tool_spans(
    rec: Finished,
    turn: Turn,
    session: str | None,
    agent: str,
    capture: bool,
    tool_starts: Mapping[str, int],
) -> list[SpanRecord]:
    """One ``execute_tool`` span per ``tool_result`` this request brings back. It ends when this
    request arrived; it starts when the ``tool_use`` was streamed (``tool_starts``, known when
    this process relayed that response), else it is marked estimated and starts at the end."""
    spans = []
    end = rec.wall_ns(rec.started)
    for result in turn.tool_results:
        attrs: dict[str, AttrValue] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": result.name or "unknown",
            "gen_ai.tool.call.id": result.tool_use_id,
            "gen_ai.tool.type": "function",
            "sluice.tool.is_error": result.is_error,
            **_common(rec, session),
        }
        start = tool_starts.get(result.tool_use_id)
        client_ms = turn.client_duration_ms(result.name)
        if client_ms is not None:  # Claude Code measured it (x-claude-code-prev-tool-durations)
            start = end - client_ms * 1_000_000
            attrs["sluice.tool.client_duration_ms"] = client_ms
        elif start is None or start > end:
            start = end
            attrs["sluice.tool.start_estimated"] = True
        if result.is_error:
            attrs["error.type"] = "tool_error"
        if capture:
            attrs["gen_ai.tool.call.arguments"] = (result.arguments or b"null").decode()
            attrs["gen_ai.tool.call.result"] = (result.result or b"null").decode()
        parent = (
            turn.chat_span_for(result.asked_at_messages)
            if result.asked_at_messages is not None
            else turn.root_span_id
        )
        spans.append(
            _span(
                rec,
                session,
                agent,
                ids=(turn.trace_id, turn.tool_span_id(result.tool_use_id), parent),
                name=f"execute_tool {result.name or 'unknown'}",
                kind="internal",
                start_ns=start,
                end_ns=end,
                attrs=attrs,
                error="tool_error" if result.is_error else None,
            )
        )
    return spans


def tool_call_starts(rec: Finished) -> dict[str, int]:
    """Wall-clock ns at which each tool_use of this response started streaming."""
    calls = rec.facts.tool_calls or ()
    return {call.id: rec.wall_ns(call.at) for call in calls if call.id and call.at}


def _semconv_message(message: Any) -> dict[str, Any]:
    """An Anthropic message in the GenAI ``input.messages`` shape (role + parts)."""
    if not isinstance(message, dict):
        return {"role": "user", "parts": []}
    content = message.get("content")
    if isinstance(content, str):
        return {"role": message.get("role"), "parts": [{"type": "text", "content": content}]}
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": block.get("text")})
        elif kind == "tool_use":
            parts.append(
                {
                    "type": "tool_call",
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "arguments": block.get("input"),
                }
            )
        elif kind == "tool_result":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": block.get("tool_use_id"),
                    "result": block.get("content"),
                }
            )
        else:
            parts.append({"type": str(kind)})
    return {"role": message.get("role"), "parts": parts}
