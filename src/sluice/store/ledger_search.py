"""Ledger search for the admin API: newest first, keyset-paginated.

The cursor is ``<created_at>.<request_id>`` of the last row of the previous page, so a page
costs an index range scan however deep it is, and rows written meanwhile never shift pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.tables import ledger


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    key: str | None = None
    principal: str | None = None
    session: str | None = None
    status: int | None = None
    project: str | None = None  # a project-scoped token's project


class BadCursor(ValueError):
    pass


def cursor_of(row: dict[str, Any]) -> str:
    return f"{row['created_at']}.{row['request_id']}"


def _parse_cursor(cursor: str) -> tuple[int, str]:
    at, _, request_id = cursor.partition(".")
    if not at.isdigit() or not request_id:
        raise BadCursor(f"not a cursor this API gave out: {cursor!r}")
    return int(at), request_id


async def search(
    engine: AsyncEngine, where: LedgerFilter, limit: int, cursor: str | None
) -> list[dict[str, Any]]:
    c = ledger.c
    query = select(ledger).order_by(c.created_at.desc(), c.request_id.desc()).limit(limit)
    for column, value in (
        (c.vk_id, where.key),
        (c.principal, where.principal),
        (c.session_id, where.session),
        (c.status, where.status),
        (c.project, where.project),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        at, request_id = _parse_cursor(cursor)
        query = query.where(
            or_(c.created_at < at, and_(c.created_at == at, c.request_id < request_id))
        )
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings().all()]


async def one(engine: AsyncEngine, request_id: str) -> dict[str, Any] | None:
    query = select(ledger).where(ledger.c.request_id == request_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row is not None else None
