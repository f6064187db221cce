"""Turns for the Messages page: the turns API's queries (store/turn_queries.py), grouped by
agent and session, and one turn's span tree laid out for the page, scoped to the signed-in
token's project."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.traces_repo import TracesRepo
from sluice.store.turn_queries import TurnFilter, turn_details, turn_rows


async def turns(engine: AsyncEngine, project: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """One row per trace, newest first: the turns API's rows (store/turn_queries.py), so a
    turn is grouped under its main agent, not a subagent it launched."""
    rows = await turn_rows(engine, TurnFilter(project=project), limit)
    return await turn_details(engine, rows)


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
