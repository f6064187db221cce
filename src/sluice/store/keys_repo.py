"""Virtual key rows: read and write, as plain rows. No business rules here (see
governance.key_admin); governance.virtual_key turns rows into ``VirtualKey``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store import audit_repo, config_version
from sluice.store.audit_repo import AuditEntry
from sluice.store.tables import virtual_keys


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One ``virtual_keys`` row as stored; ``config`` is the key config's JSON document, which
    governance parses and validates (``sluice.governance.virtual_key``)."""

    id: str
    name: str
    environment: str
    display_prefix: str
    key_hash: str
    status: str
    created_at: int
    updated_at: int
    description: str | None = None
    project: str | None = None
    principal: str | None = None
    team: str | None = None
    organization: str | None = None
    previous_key_hash: str | None = None
    previous_valid_until: int | None = None
    expires_at: int | None = None
    last_used_at: int | None = None
    config: str = "{}"


def _from_row(row: RowMapping) -> KeyRow:
    return KeyRow(**dict(row))


def _to_row(key: KeyRow) -> dict[str, Any]:
    return {name: getattr(key, name) for name in KeyRow.__slots__}


class KeysRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, key: KeyRow, audit: AuditEntry | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(virtual_keys.insert().values(**_to_row(key)))
            await config_version.bump(conn)
            if audit is not None:
                await audit_repo.write(conn, audit)

    async def get(self, key_id: str) -> KeyRow | None:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(virtual_keys).where(virtual_keys.c.id == key_id)))
                .mappings()
                .first()
            )
        return _from_row(row) if row is not None else None

    async def find(self, ident: str) -> list[KeyRow]:
        """By exact id, display prefix or name (a prefix or a name may match several keys)."""
        c = virtual_keys.c
        query = select(virtual_keys).where(
            or_(c.id == ident, c.display_prefix == ident, c.name == ident)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_from_row(r) for r in rows]

    async def field_in_use(self, column: str, value: str) -> bool:
        """Whether some key has ``value`` in ``column`` (principal, project, team, …)."""
        query = select(virtual_keys.c.id).where(virtual_keys.c[column] == value).limit(1)
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def list_all(self) -> list[KeyRow]:
        query = select(virtual_keys).order_by(virtual_keys.c.created_at)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_from_row(r) for r in rows]

    async def changed_since(self, since_ms: int) -> list[KeyRow]:
        query = select(virtual_keys).where(virtual_keys.c.updated_at >= since_ms)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_from_row(r) for r in rows]

    async def get_many(self, ids: list[str]) -> list[KeyRow]:
        if not ids:
            return []
        query = select(virtual_keys).where(virtual_keys.c.id.in_(ids))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_from_row(r) for r in rows]

    async def save(self, key: KeyRow, audit: AuditEntry | None = None) -> None:
        row = _to_row(key)
        row.pop("id")
        row.pop("last_used_at")  # owned by the ledger writer (batched with its inserts)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(virtual_keys).where(virtual_keys.c.id == key.id).values(**row)
            )
            await config_version.bump(conn)
            if audit is not None:
                await audit_repo.write(conn, audit)
