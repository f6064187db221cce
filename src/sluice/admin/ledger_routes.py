"""Read-only views: ``spend`` (totals), ``requests`` (the ledger) and ``audit``.

A project-scoped token sees only its project's rows; another project's request id is a 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from sluice.admin.auth import Reader, visible
from sluice.admin.errors import ApiError, not_found
from sluice.admin.state import state_of
from sluice.store import audit_repo, ledger_search
from sluice.store.ledger_search import BadCursor, LedgerFilter
from sluice.store.spend_queries import DAY_MS, spend_query

router = APIRouter(tags=["reads"])

GroupBy = Literal[
    "principal", "key", "project", "team", "model", "day", "request_class", "agent", "ingress"
]
Limit = Annotated[int, Query(ge=1, le=500)]


def _when(text: str | None, name: str) -> int | None:
    """ms since the epoch, or an ISO date/datetime (UTC when no zone is given)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(422, f"{name}: not an ISO date or ms since the epoch") from exc
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)


def _group_value(by: str, value: Any) -> Any:
    if by == "day" and value is not None:
        return datetime.fromtimestamp(int(value) * DAY_MS / 1000, UTC).date().isoformat()
    return value


@router.get("/spend", summary="Requests, tokens and cost grouped by one dimension")
async def spend(
    who: Reader,
    request: Request,
    group_by: GroupBy = "key",
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
) -> dict[str, Any]:
    query = spend_query(group_by, _when(from_, "from"), _when(to, "to"), who.project)
    async with state_of(request).engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    data = []
    for row in rows:
        item: dict[str, Any] = {k: int(v) for k, v in row.items() if k != "group"}
        item["cost_usd"] = item["cost_micros"] / 1_000_000
        data.append({group_by: _group_value(group_by, row["group"]), **item})
    return {"group_by": group_by, "data": data}


def _request_row(row: dict[str, Any]) -> dict[str, Any]:
    row["key"] = row.pop("vk_id")
    row["cost_usd"] = row["cost_micros"] / 1_000_000 if row["cost_micros"] is not None else None
    return row


@router.get("/requests", summary="Ledger search, newest first (keyset pagination)")
async def requests(
    who: Reader,
    request: Request,
    key: str | None = None,
    principal: str | None = None,
    session: str | None = None,
    status: int | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    where = LedgerFilter(key, principal, session, status, who.project)
    try:
        rows = await ledger_search.search(state_of(request).engine, where, limit, cursor)
    except BadCursor as exc:
        raise ApiError(400, str(exc)) from exc
    following = ledger_search.cursor_of(rows[-1]) if len(rows) == limit else None
    return {"data": [_request_row(r) for r in rows], "next_cursor": following}


@router.get("/requests/{request_id}", summary="One ledger row")
async def one_request(request_id: str, who: Reader, request: Request) -> dict[str, Any]:
    row = await ledger_search.one(state_of(request).engine, request_id)
    if row is None or not visible(who, row["project"]):
        raise not_found("request", request_id)
    return _request_row(row)


@router.get("/audit", summary="Every admin mutation, newest first")
async def audit(
    who: Reader, request: Request, limit: Limit = 50, cursor: str | None = None
) -> dict[str, Any]:
    rows = await audit_repo.page(state_of(request).engine, limit, cursor, who.project)
    following = rows[-1]["id"] if len(rows) == limit else None
    return {"data": rows, "next_cursor": following}
