"""``sluice spend``: totals from the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

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
from sluice.cli.remote import TokenOption, UrlOption, remember
from sluice.cli.tables import Col, print_table
from sluice.governance.windows import WINDOWS, window_bounds
from sluice.store.spend_queries import spend_query
from sluice.store.tables import ledger

# The CLI's --by values (the API adds team and day).
CLI_GROUPS = (
    "key",
    "principal",
    "project",
    "model",
    "session",
    "request_class",
    "agent",
    "ingress",
)
# What the admin API groups by (no session; it adds team and day).
API_GROUPS = (
    "key",
    "principal",
    "project",
    "team",
    "model",
    "day",
    "request_class",
    "agent",
    "ingress",
)


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
    url: str | None = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Token totals per key, principal, project, model, session, request class or agent
    (remotely with --url/--token or SLUICE_ADMIN_URL: also team and day, not session)."""
    remote = remember(url, token)
    groups = API_GROUPS if remote is not None else CLI_GROUPS
    if by not in groups:
        raise typer.BadParameter(f"--by must be one of {', '.join(groups)}")
    if window is not None and window not in WINDOWS:
        raise typer.BadParameter(f"--window must be one of {', '.join(WINDOWS)}")
    now = SystemClock().now_ms()
    starts = [window_bounds(window, now)[0]] if window is not None else []
    if since:
        starts.append(parse_when(since, now, future=False))
    if remote is not None:
        params = {"group_by": by, "from": max(starts) if starts else None}
        data = remote.call("GET", "/spend", params=params)["data"]
        # The local row shape: the group under "group", integers only (no cost_usd).
        rows = [
            {"group": r[by], **{k: v for k, v in r.items() if k not in (by, "cost_usd")}}
            for r in data
        ]
    else:
        rows = run(lambda: _local(config, by, starts))
    if as_json:
        print_json(
            [{by: r["group"], **{k: int(v) for k, v in r.items() if k != "group"}} for r in rows]
        )
        return
    _print(by, rows)


async def _local(config: Path | None, by: str, starts: list[int]) -> list[dict[str, Any]]:
    cfg = config_or_exit(config)
    query = spend_query(by)
    for start in starts:
        query = query.where(ledger.c.created_at >= start)
    async with open_db(cfg) as (engine, _secret), engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings().all()]


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
