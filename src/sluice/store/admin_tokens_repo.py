"""Admin API token rows. Only an HMAC of each token is stored (governance.admin_tokens)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store import audit_repo
from sluice.store.audit_repo import AuditEntry
from sluice.store.tables import admin_tokens


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    name: str
    role: str  # admin | viewer
    token_hash: str
    created_at: int
    project: str | None = None
    expires_at: int | None = None
    revoked_at: int | None = None
    last_used_at: int | None = None


def _from_row(row: RowMapping) -> TokenRow:
    return TokenRow(**dict(row))


class AdminTokensRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, token: TokenRow, audit: AuditEntry | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(admin_tokens.insert().values(**dataclasses.asdict(token)))
            if audit is not None:
                await audit_repo.write(conn, audit)

    async def get(self, token_id: str) -> TokenRow | None:
        query = select(admin_tokens).where(admin_tokens.c.id == token_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _from_row(row) if row is not None else None

    async def list_all(self) -> list[TokenRow]:
        query = select(admin_tokens).order_by(admin_tokens.c.created_at)
        async with self._engine.connect() as conn:
            return [_from_row(r) for r in (await conn.execute(query)).mappings().all()]

    async def revoke(self, token_id: str, at: int, audit: AuditEntry | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(admin_tokens).where(admin_tokens.c.id == token_id).values(revoked_at=at)
            )
            if audit is not None:
                await audit_repo.write(conn, audit)

    async def revoke_if_active(self, token_id: str, at: int) -> bool:
        """Revoke, unless already revoked; True for the one caller that revoked it (a
        single-use token is used once even when two requests race)."""
        query = (
            update(admin_tokens)
            .where(admin_tokens.c.id == token_id, admin_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def touch(self, token_id: str, at: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(admin_tokens).where(admin_tokens.c.id == token_id).values(last_used_at=at)
            )
