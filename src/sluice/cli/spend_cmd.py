"""``sluice spend``: totals from the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from sqlalchemy import ColumnElement, Select, func, select

from sluice.base.clock import SystemClock
from sluice.cli.common import (
    ConfigOption,
    JsonOption,
    config_or_exit,
    open_db,
    parse_when,
    print_json,
    run,
)
from sluice.cli.tables import Col, print_table
from sluice.governance.windows import WINDOWS, window_bounds
from sluice.store.tables import ledger

GROUPS = {
    "key": ledger.c.vk_id,
    "principal": ledger.c.principal,
    "project": ledger.c.project,
    "model": ledger.c.model_sent,
    "session": ledger.c.session_id,
    # Claude Code's gateway hints: what compaction, subagents and titles cost a team.
    "request_class": ledger.c.request_class,
    "agent": ledger.c.agent_id,
    "ingress": ledger.c.ingress,  # the door: anthropic, bedrock, vertex or openai
}


def spend(
    by: str = typer.Option(
        "key",
        "--by",
        help="key, principal, project, model, session, request_class, agent or ingress",
    ),
    since: str | None = typer.Option(None, "--since", help="A date, or a duration back like 7d."),
    window: str | None = typer.Option(
        None, "--window", help="The current UTC window: minute, hour, day, week, month or total."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Token totals per key, principal, project, model, session, request class or agent."""
    if by not in GROUPS:
        raise typer.BadParameter(f"--by must be one of {', '.join(GROUPS)}")
    cfg = config_or_exit(config)
    query = _totals(GROUPS[by])
    if window is not None:
        if window not in WINDOWS:
            raise typer.BadParameter(f"--window must be one of {', '.join(WINDOWS)}")
        query = query.where(ledger.c.created_at >= window_bounds(window, SystemClock().now_ms())[0])
    if since:
        query = query.where(
            ledger.c.created_at >= parse_when(since, SystemClock().now_ms(), future=False)
        )

    async def fetch() -> list[dict[str, Any]]:
        async with open_db(cfg) as (engine, _secret), engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    rows = run(fetch)
    if as_json:
        print_json(
            [{by: r["group"], **{k: int(v) for k, v in r.items() if k != "group"}} for r in rows]
        )
        return
    _print(by, rows)


def _totals(column: ColumnElement[Any]) -> Select[Any]:
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


def _print(by: str, rows: list[dict[str, Any]]) -> None:
    print_table(
        [
            Col(by, keep=True),
            Col("requests", justify="right"),
            Col("token counts", justify="right", drop=5),
            Col("cost USD", justify="right"),
            Col("input", justify="right", drop=4),
            Col("output", justify="right", drop=3),
            Col("cache read", justify="right", drop=2),
            Col("cache write", justify="right", drop=1),
        ],
        [
            [
                r["group"],
                r["requests"],
                r["token_counts"],
                _cost(r),
                r["input_tokens"],
                r["output_tokens"],
                r["cache_read_tokens"],
                r["cache_creation_tokens"],
            ]
            for r in rows
        ],
    )


def _cost(row: dict[str, Any]) -> str:
    cost = f"{int(row['cost_micros']) / 1e6:.6f}"
    if row["unpriced_requests"]:
        cost += f" (+{row['unpriced_requests']} unpriced)"
    return cost
