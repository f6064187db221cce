"""Turns for the Messages page, read from the local trace store (store/traces_repo.py).

The turns API (``/api/v1/turns``) is another branch's; until it is merged the console reads
the same store it will read, scoped to the signed-in token's project.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.tables import trace_spans
from sluice.store.traces_repo import TracesRepo

ROOT_PREFIX = "invoke_agent"


async def turns(engine: AsyncEngine, project: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """One row per trace, newest first."""
    c = trace_spans.c
    query = (
        select(
            c.trace_id,
            func.max(c.agent).label("agent"),
            func.max(c.session_id).label("session_id"),
            func.max(c.vk_id).label("vk_id"),
            func.max(c.project).label("project"),
            func.count().filter(c.name.like("chat %")).label("model_calls"),
            func.count().filter(c.name.like("execute_tool %")).label("tools"),
            func.coalesce(func.sum(c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(c.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(c.cost_micros), 0).label("cost_micros"),
            func.count().filter(c.error.is_not(None)).label("errors"),
            func.min(c.start_ns).label("start_ns"),
            func.max(c.end_ns).label("end_ns"),
        )
        .group_by(c.trace_id)
        .order_by(func.min(c.start_ns).desc())
        .limit(limit)
    )
    if project is not None:
        query = query.where(c.project == project)
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings().all()]


def grouped(rows: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, list[Any]]]]]:
    """[(agent, [(session, [turn, ...]), ...]), ...], in order of each group's newest turn."""
    agents: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        row["duration_ms"] = (row["end_ns"] - row["start_ns"]) / 1e6
        agent = row["agent"] or "(no agent name)"
        session = row["session_id"] or "(no session)"
        agents.setdefault(agent, {}).setdefault(session, []).append(row)
    return [(agent, list(sessions.items())) for agent, sessions in agents.items()]


def _node(span: dict[str, Any]) -> dict[str, Any]:
    attributes = orjson.loads(span["attributes"]) if span.get("attributes") else {}
    return {
        "name": span["name"],
        "span_id": span["span_id"],
        "parent": span["parent_span_id"],
        "duration_ms": (span["end_ns"] - span["start_ns"]) / 1e6,
        "input_tokens": span["input_tokens"],
        "output_tokens": span["output_tokens"],
        "cache_read": attributes.get("gen_ai.usage.cache_read.input_tokens")
        or attributes.get("gen_ai.usage.cache_read_input_tokens"),
        "cost_micros": span["cost_micros"],
        "model": attributes.get("gen_ai.response.model") or attributes.get("gen_ai.request.model"),
        "error": span["error"],
        "children": [],
    }


async def tree(
    engine: AsyncEngine, trace_id: str, project: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """(roots, every span flattened depth-first with its depth), or None when the trace is
    absent or another project's."""
    spans = await TracesRepo(engine).spans(trace_id)
    if not spans or (project is not None and any(s["project"] != project for s in spans)):
        return None
    start = min(s["start_ns"] for s in spans)
    nodes = {s["span_id"]: _node(s) | {"offset_ms": (s["start_ns"] - start) / 1e6} for s in spans}
    roots: list[dict[str, Any]] = []
    for node in nodes.values():
        parent = nodes.get(node["parent"] or "")
        (parent["children"] if parent is not None else roots).append(node)
    flat: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        flat.append(node | {"depth": depth})
        for child in node["children"]:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return roots, flat
