"""Budget rows, and what the ledger says was spent against one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store import audit_repo, config_version
from sluice.store.audit_repo import AuditEntry
from sluice.store.tables import budgets, ledger

SCOPES = ("organization", "team", "project", "virtual_key", "principal")
# The ledger column each scope's target is matched against.
SCOPE_COLUMNS = {
    "organization": ledger.c.organization,
    "team": ledger.c.team,
    "project": ledger.c.project,
    "virtual_key": ledger.c.vk_id,
    "principal": ledger.c.principal,
}


@dataclass(frozen=True, slots=True)
class Budget:
    id: str
    scope: str
    target: str
    window: str
    limit_micros: int
    on_breach: str
    created_at: int
    updated_at: int
    name: str | None = None
    webhook_url: str | None = None
    webhook_format: str = "json"
    reset_at: int = 0

    def public_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["limit_usd"] = self.limit_micros / 1_000_000
        return data


def _from_row(row: RowMapping) -> Budget:
    return Budget(**dict(row))


class BudgetsRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, budget: Budget, audit: AuditEntry | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(budgets.insert().values(**dataclasses.asdict(budget)))
            await config_version.bump(conn)
            if audit is not None:
                await audit_repo.write(conn, audit)

    async def save(self, budget: Budget, audit: AuditEntry | None = None) -> None:
        values = dataclasses.asdict(budget)
        values.pop("id")
        async with self._engine.begin() as conn:
            await conn.execute(update(budgets).where(budgets.c.id == budget.id).values(**values))
            await config_version.bump(conn)
            if audit is not None:
                await audit_repo.write(conn, audit)

    async def delete(self, budget_id: str, audit: AuditEntry | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(budgets).where(budgets.c.id == budget_id))
            await config_version.bump(conn)
            if audit is not None:
                await audit_repo.write(conn, audit)

    async def get(self, budget_id: str) -> Budget | None:
        query = select(budgets).where(budgets.c.id == budget_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _from_row(row) if row is not None else None

    async def find(self, id_or_name: str) -> list[Budget]:
        query = select(budgets).where(or_(budgets.c.id == id_or_name, budgets.c.name == id_or_name))
        async with self._engine.connect() as conn:
            return [_from_row(r) for r in (await conn.execute(query)).mappings().all()]

    async def list_all(self) -> list[Budget]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(budgets).order_by(budgets.c.created_at))).mappings()
            return [_from_row(r) for r in rows.all()]

    async def spent_micros(self, budget: Budget, since_ms: int) -> int:
        """What the ledger counts against ``budget`` since ``since_ms``."""
        column = SCOPE_COLUMNS[budget.scope]
        query = select(func.coalesce(func.sum(ledger.c.budget_micros), 0)).where(
            column == budget.target, ledger.c.created_at >= max(since_ms, budget.reset_at)
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
