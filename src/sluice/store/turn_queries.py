"""Turns (one trace each) read back from the local trace store: the list, with filters and
keyset pagination, and one turn's span tree. ``sluice traces`` and the admin API's ``turns``
both read through here, so the terminal and the Messages view agree."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.tables import trace_spans, virtual_keys

_CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
# The SDK's older name and the v1.41 one: a span carries one or the other.
_CACHE_WRITE = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens")


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class TurnFilter:
    project: str | None = None
    principal: str | None = None
    session: str | None = None
    agent: str | None = None
    key: str | None = None
    trace: str | None = None  # one turn (its summary for the tree view)


def _aggregate() -> Select[Any]:
    c = trace_spans.c
    return select(
        c.trace_id,
        func.max(c.agent).label("agent"),  # replaced by the root's agent in turn_details
        func.max(c.session_id).label("session_id"),
        func.max(c.vk_id).label("vk_id"),
        func.max(c.project).label("project"),
        func.count().filter(c.name.like("chat %")).label("model_calls"),
        func.count().filter(c.name.like("execute_tool %")).label("tools"),
        func.coalesce(func.sum(c.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(c.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(c.cost_micros), 0).label("cost_micros"),
        # Model calls whose model has no known price: the turn's cost is incomplete.
        func.count().filter(c.name.like("chat %"), c.cost_micros.is_(None)).label("unpriced_calls"),
        func.count().filter(c.error.is_not(None)).label("errors"),
        func.min(c.start_ns).label("start_ns"),
        func.max(c.end_ns).label("end_ns"),
    ).group_by(c.trace_id)


def _where(query: Select[Any], where: TurnFilter) -> Select[Any]:
    c = trace_spans.c
    if where.trace is not None:
        query = query.where(c.trace_id == where.trace)
    if where.session is not None:
        query = query.where(c.session_id == where.session)
    if where.key is not None:
        query = query.where(c.vk_id == where.key)
    if where.project is not None:
        query = query.where(c.project == where.project)
    if where.agent is not None:
        query = query.where(c.trace_id.in_(_rooted_by(where.agent)))
    if where.principal is not None:
        keys = select(virtual_keys.c.id).where(virtual_keys.c.principal == where.principal)
        query = query.where(c.vk_id.in_(keys))
    return query


def _rooted_by(agent: str) -> Select[Any]:
    """Traces whose root (an ``invoke_agent`` span with no stored parent) is ``agent``'s: a
    turn is listed under its main agent, not under the subagents it launched."""
    span, parent = trace_spans.alias("span"), trace_spans.alias("parent")
    stored_parent = (
        select(parent.c.span_id)
        .where(parent.c.trace_id == span.c.trace_id, parent.c.span_id == span.c.parent_span_id)
        .exists()
    )
    return select(span.c.trace_id).where(
        span.c.name.like("invoke_agent %"), span.c.agent == agent, ~stored_parent
    )


def encode_cursor(row: dict[str, Any]) -> str:
    raw = orjson.dumps([int(row["start_ns"]), row["trace_id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        start, trace = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(start), str(trace)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise BadCursor("cursor: not one this API returned") from exc


async def turn_rows(
    engine: AsyncEngine, where: TurnFilter, limit: int = 50, cursor: str | None = None
) -> list[dict[str, Any]]:
    """One row per trace (turn), newest first; ``cursor`` continues after a page's last row."""
    c = trace_spans.c
    first = func.min(c.start_ns)
    query = _where(_aggregate(), where)
    if cursor is not None:
        start, trace = _decode_cursor(cursor)
        query = query.having(or_(first < start, and_(first == start, c.trace_id < trace)))
    query = query.order_by(first.desc(), c.trace_id.desc()).limit(limit)
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings().all()]


async def turn_details(engine: AsyncEngine, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with what only their spans tell: principal, models, tools, cache tokens,
    outcome (one more query for the page's chat and tool spans, one for the principals)."""
    ids = [r["trace_id"] for r in rows]
    if not ids:
        return []
    c = trace_spans.c
    query = (
        select(c.trace_id, c.name, c.agent, c.attributes, c.error, c.start_ns)
        .where(c.trace_id.in_(ids))
        .order_by(c.start_ns)
    )
    keys = {r["vk_id"] for r in rows if r["vk_id"]}
    async with engine.connect() as conn:
        spans = (await conn.execute(query)).mappings().all()
        owners = await conn.execute(
            select(virtual_keys.c.id, virtual_keys.c.principal).where(virtual_keys.c.id.in_(keys))
        )
        principals = {str(k): p for k, p in owners.all()}
    per_trace: dict[str, list[Any]] = {}
    for span in spans:
        per_trace.setdefault(span["trace_id"], []).append(span)
    return [
        {
            **row,
            "principal": principals.get(row["vk_id"]),
            **_from_spans(per_trace.get(row["trace_id"], [])),
        }
        for row in rows
    ]


def _from_spans(spans: Sequence[Any]) -> dict[str, Any]:
    models: list[str] = []
    tools: list[str] = []
    agents: list[str] = []  # the main agent first (its root starts the turn), then subagents
    cache_read = cache_write = 0
    stop: str | None = None
    error: str | None = None
    for span in spans:
        error = error or span["error"]
        if span["name"].startswith("invoke_agent "):
            if span["agent"] and span["agent"] not in agents:
                agents.append(str(span["agent"]))
            continue
        attrs = orjson.loads(span["attributes"])
        if span["name"].startswith("execute_tool "):
            tools.append(str(attrs.get("gen_ai.tool.name") or span["name"][13:]))
            continue
        model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
        if model and model not in models:
            models.append(str(model))
        cache_read += int(attrs.get(_CACHE_READ) or 0)
        cache_write += int(next((attrs[k] for k in _CACHE_WRITE if attrs.get(k)), 0))
        reasons = attrs.get("gen_ai.response.finish_reasons")
        if reasons:
            stop = str(reasons[-1])
    main = {"agent": agents[0]} if agents else {}  # else: the stored rows' agent stays
    return {
        **main,
        "subagents": agents[1:],
        "models": models,
        "tools_called": tools,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "stop_reason": stop,
        "first_error": error,
    }


def span_tokens(span: dict[str, Any], attrs: dict[str, Any]) -> dict[str, int]:
    return {
        "input": int(span["input_tokens"]),
        "output": int(span["output_tokens"]),
        "cache_read": int(attrs.get(_CACHE_READ) or 0),
        "cache_write": int(next((attrs[k] for k in _CACHE_WRITE if attrs.get(k)), 0)),
    }


def span_tree(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans (ordered by start) as nested nodes; a span whose parent is not stored (an outside
    ``traceparent``'s) is a root."""
    ids = {s["span_id"] for s in spans}
    nodes: dict[str, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for span in spans:
        attrs = orjson.loads(span["attributes"])
        node = {**span, "attributes": attrs, "tokens": span_tokens(span, attrs), "children": []}
        nodes[span["span_id"]] = node
    for span in spans:
        parent = span["parent_span_id"]
        node = nodes[span["span_id"]]
        if parent in ids and parent != span["span_id"]:
            nodes[parent]["children"].append(node)
        else:
            roots.append(node)
    return roots
