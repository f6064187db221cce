"""Spend totals from the ledger: shared by ``sluice spend`` and the admin API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func, select

from sluice.store.tables import ledger

DAY_MS = 86_400_000

GROUPS: dict[str, ColumnElement[Any]] = {
    "key": ledger.c.vk_id,
    "principal": ledger.c.principal,
    "project": ledger.c.project,
    "team": ledger.c.team,
    "model": ledger.c.model_sent,
    "session": ledger.c.session_id,
    # Claude Code's gateway hints: what compaction, subagents and titles cost a team.
    "request_class": ledger.c.request_class,
    "agent": ledger.c.agent_id,
    "ingress": ledger.c.ingress,  # the door: anthropic, bedrock, vertex or openai
    # Whole UTC days since the epoch (the caller turns them into dates).
    "day": ledger.c.created_at // DAY_MS,
}


def totals(column: ColumnElement[Any]) -> Select[Any]:
    """Requests, tokens and cost per value of ``column``. Token counts (count_tokens calls:
    the CLI's /context makes dozens) are counted apart from model requests."""
    counting = ledger.c.endpoint == "count_tokens"
    return (
        select(
            column.label("group"),
            func.count().filter(~counting).label("requests"),
            func.count().filter(counting).label("token_counts"),
            func.coalesce(func.sum(ledger.c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(ledger.c.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(ledger.c.cache_read_tokens), 0).label("cache_read_tokens"),
            func.coalesce(func.sum(ledger.c.cache_creation_tokens), 0).label(
                "cache_creation_tokens"
            ),
            func.coalesce(func.sum(ledger.c.cost_micros), 0).label("cost_micros"),
            # Rows whose model has no known price: their cost is unknown, not zero.
            func.count(ledger.c.request_id)
            .filter(ledger.c.cost_micros.is_(None))
            .label("unpriced_requests"),
        )
        .group_by(column)
        .order_by(column)
    )


def spend_query(
    by: str, since_ms: int | None = None, until_ms: int | None = None, project: str | None = None
) -> Select[Any]:
    query = totals(GROUPS[by])
    if since_ms is not None:
        query = query.where(ledger.c.created_at >= since_ms)
    if until_ms is not None:
        query = query.where(ledger.c.created_at < until_ms)
    if project is not None:
        query = query.where(ledger.c.project == project)
    return query
