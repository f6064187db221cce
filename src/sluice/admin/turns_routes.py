"""The Messages view: ``turns`` (one Claude Code turn per trace) from the local trace store,
and one turn's span tree (invoke_agent -> chat -> execute_tool, subagents nested).

A project-scoped token lists only its project's turns, and another project's trace is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from sluice.admin.auth import Reader, visible
from sluice.admin.errors import ApiError, not_found
from sluice.admin.state import state_of
from sluice.store.traces_repo import TracesRepo
from sluice.store.turn_queries import (
    BadCursor,
    TurnFilter,
    encode_cursor,
    span_tree,
    turn_details,
    turn_rows,
)

router = APIRouter(prefix="/turns", tags=["turns"])

Limit = Annotated[int, Query(ge=1, le=500)]


def _usd(micros: Any) -> float | None:
    return None if micros is None else int(micros) / 1_000_000


def _turn(row: dict[str, Any]) -> dict[str, Any]:
    unpriced, calls = int(row["unpriced_calls"]), int(row["model_calls"])
    errors = int(row["errors"])
    return {
        "trace_id": row["trace_id"],
        "agent": row["agent"],
        "subagents": row["subagents"],
        "session": row["session_id"],
        "principal": row["principal"],
        "key": row["vk_id"],
        "project": row["project"],
        "models": row["models"],
        "model_calls": calls,
        "tools_called": row["tools_called"],
        "tokens": {
            "input": int(row["input_tokens"]),
            "output": int(row["output_tokens"]),
            "cache_read": row["cache_read_tokens"],
            "cache_write": row["cache_write_tokens"],
        },
        # null when no model call of the turn has a known price; else the priced calls' sum
        # (``unpriced_calls`` says how many are missing from it).
        "cost_usd": None if calls and unpriced == calls else _usd(row["cost_micros"]),
        "unpriced_calls": unpriced,
        "start_ms": int(row["start_ns"]) // 1_000_000,
        "duration_ms": max(0, int(row["end_ns"]) - int(row["start_ns"])) // 1_000_000,
        "outcome": "error" if errors else "ok",
        "errors": errors,
        "error": row["first_error"],
        "stop_reason": row["stop_reason"],
    }


def _node(node: dict[str, Any]) -> dict[str, Any]:
    name = str(node["name"])
    operation, _, target = name.partition(" ")
    return {
        "span_id": node["span_id"],
        "parent_span_id": node["parent_span_id"],
        "name": name,
        "operation": operation,  # invoke_agent | chat | execute_tool
        "target": target,  # the agent, model or tool
        "agent": node["agent"],
        "request_id": node["request_id"],
        "start_ms": int(node["start_ns"]) // 1_000_000,
        "duration_ms": max(0, int(node["end_ns"]) - int(node["start_ns"])) / 1e6,
        "tokens": node["tokens"],
        "cost_usd": _usd(node["cost_micros"]),
        "error": node["error"],
        "attributes": node["attributes"],
        "children": [_node(child) for child in node["children"]],
    }


@router.get("", summary="Turns (one trace each), newest first (keyset pagination)")
async def turns(
    who: Reader,
    request: Request,
    project: str | None = None,
    principal: str | None = None,
    session: str | None = None,
    agent: str | None = None,
    key: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    if who.project is not None:
        if project not in (None, who.project):
            return {"data": [], "next_cursor": None}  # another project's turns: none visible
        project = who.project
    engine = state_of(request).engine
    where = TurnFilter(project, principal, session, agent, key)
    try:
        rows = await turn_rows(engine, where, limit, cursor)
    except BadCursor as exc:
        raise ApiError(400, str(exc)) from exc
    following = encode_cursor(rows[-1]) if len(rows) == limit else None
    return {"data": [_turn(r) for r in await turn_details(engine, rows)], "next_cursor": following}


@router.get("/{trace_id}", summary="One turn: its summary and span tree")
async def one_turn(trace_id: str, who: Reader, request: Request) -> dict[str, Any]:
    engine = state_of(request).engine
    spans = await TracesRepo(engine).spans(trace_id)
    projects = {s["project"] for s in spans}
    if not spans or not all(visible(who, p) for p in projects):
        raise not_found("turn", trace_id)
    rows = await turn_rows(engine, TurnFilter(trace=spans[0]["trace_id"]), 1)
    [summary] = await turn_details(engine, rows)
    return {**_turn(summary), "spans": [_node(n) for n in span_tree(spans)]}
