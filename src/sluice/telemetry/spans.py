"""Spans (OTel GenAI semantic conventions) from a finished request: pure, no IO.

``Finished`` is what the request path hands over: a handful of references, copied in a few
microseconds. Everything else (turn detection, attributes, content) happens here, later, in
the telemetry worker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.base.usage import ResponseFacts
from sluice.core.context import RequestContext
from sluice.telemetry.turns import Turn, opening_messages

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
    """One finished ``/v1/messages`` request, as the telemetry worker needs it."""

    request_id: str
    wall_offset_ns: int  # wall-clock ns = wall_offset_ns + monotonic ns
    started: float  # monotonic seconds
    ended: float
    turn: Turn
    session: str | None
    agent: str
    messages_json: bytes | None  # the messages, only when content may be captured
    model_requested: str | None
    model_sent: str | None
    stream: bool
    max_tokens: int | None
    key_id: str | None
    project: str | None
    principal: str | None
    provider_id: str | None
    provider_kind: str | None
    attempts: int
    status: int
    error_code: str | None
    upstream_request_id: str | None
    facts: ResponseFacts
    policy_violation: str | None
    cost_micros: int | None
    budget_warned: bool

    @classmethod
    def of(
        cls,
        ctx: RequestContext,
        row: Mapping[str, Any],
        turn: Turn,
        session: str | None,
        agent: str,
        capture: bool,
    ) -> Finished:
        now = time.perf_counter()
        key = ctx.key
        return cls(
            ctx.request_id,
            time.time_ns() - int(now * 1e9),
            ctx.started,
            now,
            turn,
            session,
            agent,
            bytes(ctx.messages_raw) if capture else None,
            ctx.model_requested,
            ctx.model_sent,
            ctx.stream,
            ctx.max_tokens,
            key.id if key else None,
            key.project if key else None,
            key.principal if key else None,
            ctx.provider_id,
            ctx.provider_kind,
            ctx.attempts,
            ctx.status,
            ctx.error_code,
            ctx.upstream_request_id,
            ctx.facts,
            ctx.policy_violation,
            row.get("cost_micros"),
            any(name == b"x-langwatch-budget-warning" for name, _ in ctx.response_headers),
        )

    def wall_ns(self, monotonic: float) -> int:
        return self.wall_offset_ns + int(monotonic * 1e9)

    @property
    def size(self) -> int:
        """Bytes this record keeps alive (the request's messages, when capturing)."""
        return len(self.messages_json) if self.messages_json is not None else 0


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


def budget_decision(rec: Finished) -> str:
    if rec.error_code == "budget_exceeded":
        return "blocked"
    return "soft_warn" if rec.budget_warned else "allowed"


def _common(rec: Finished, session: str | None) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {}
    if session:
        attrs["gen_ai.conversation.id"] = session
    for name, value in (
        ("langwatch.virtual_key_id", rec.key_id),
        ("langwatch.project_id", rec.project),
        ("langwatch.principal_id", rec.principal),
    ):
        if value is not None:
            attrs[name] = value
    return attrs


def chat_span(
    rec: Finished, turn: Turn, session: str | None, agent: str, capture: bool
) -> SpanRecord:
    facts, usage = rec.facts, rec.facts.usage
    model = rec.model_sent or rec.model_requested or "unknown"
    attrs: dict[str, AttrValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER_NAMES.get(rec.provider_kind or "", rec.provider_kind or "")
        or "unknown",
        "gen_ai.request.model": model,
        "gen_ai.request.stream": rec.stream,
        **_common(rec, session),
        "langwatch.gateway_request_id": rec.request_id,
        "langwatch.fallback.attempts_count": rec.attempts,
        "langwatch.budget.decision": budget_decision(rec),
        "http.response.status_code": rec.status,
    }
    optional: dict[str, AttrValue | None] = {
        "gen_ai.request.max_tokens": rec.max_tokens,
        "langwatch.requested_model": rec.model_requested,
        "langwatch.model_provider_id": rec.provider_id,
        "gen_ai.response.model": facts.response_model,
        "gen_ai.response.id": facts.response_id,
        "langwatch.upstream_request_id": rec.upstream_request_id,
        "langwatch.policy.violation": rec.policy_violation,
        "langwatch.cost_usd": None if rec.cost_micros is None else rec.cost_micros / 1e6,
        "gen_ai.usage.cost": rec.cost_micros,
    }
    attrs.update({k: v for k, v in optional.items() if v is not None})
    if facts.stop_reason:
        attrs["gen_ai.response.finish_reasons"] = [facts.stop_reason]
    if facts.first_token_at is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = max(0.0, facts.first_token_at - rec.started)
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
    error = rec.error_code or facts.stream_error_type
    if error is None and rec.status >= 400:
        error = str(rec.status)
    if error is not None:
        attrs["error.type"] = error
    if capture:
        attrs["gen_ai.input.messages"] = orjson.dumps(
            [_semconv_message(m) for m in opening_messages(rec.messages_json, turn.opening_index)]
        ).decode()
    return SpanRecord(
        turn.trace_id,
        turn.chat_span_id,
        turn.root_span_id,
        f"chat {model}",
        "client",
        rec.wall_ns(rec.started),
        rec.wall_ns(rec.ended),
        attrs,
        error,
        session,
        rec.key_id,
        rec.project,
        agent,
        rec.request_id,
        usage.total_input_tokens,
        usage.output_tokens,
        rec.cost_micros,
    )


def root_span(rec: Finished, turn: Turn, session: str | None, agent: str) -> SpanRecord:
    """Emitted once per turn, by the request that opens it, spanning that request."""
    attrs: dict[str, AttrValue] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent,
        **_common(rec, session),
        "langwatch.gateway_request_id": rec.request_id,
    }
    return SpanRecord(
        turn.trace_id,
        turn.root_span_id,
        turn.caller_span_id,
        f"invoke_agent {agent}",
        "internal",
        rec.wall_ns(rec.started),
        rec.wall_ns(rec.ended),
        attrs,
        None,
        session,
        rec.key_id,
        rec.project,
        agent,
        rec.request_id,
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
        if start is None or start > end:
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
            SpanRecord(
                turn.trace_id,
                turn.tool_span_id(result.tool_use_id),
                parent,
                f"execute_tool {result.name or 'unknown'}",
                "internal",
                start,
                end,
                attrs,
                "tool_error" if result.is_error else None,
                session,
                rec.key_id,
                rec.project,
                agent,
                rec.request_id,
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
