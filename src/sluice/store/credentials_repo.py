"""Provider credentials per project, sealed with the KEK; every change bumps the config
version and is audited (without the secret) in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store import audit_repo, config_version
from sluice.store.audit_repo import AuditEntry
from sluice.store.sealing import credential_aad, seal, unseal
from sluice.store.tables import provider_credentials

_T = provider_credentials


@dataclass(frozen=True)
class StoredCredential:
    project: str
    provider_id: str
    kind: str
    last4: str
    set_at: int
    set_by: str
    sealed: bytes

    def public(self) -> dict[str, Any]:
        """What the API shows: never the secret, only its last four characters."""
        return {
            "kind": self.kind,
            "last4": self.last4,
            "set_at": self.set_at,
            "set_by": self.set_by,
        }

    def open(self, kek: bytes) -> bytes:
        return unseal(kek, self.sealed, credential_aad(self.project, self.provider_id))


class CredentialsRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def all(self, project: str | None = None) -> list[StoredCredential]:
        query = select(_T).order_by(_T.c.project, _T.c.provider_id)
        if project is not None:
            query = query.where(_T.c.project == project)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [StoredCredential(**{k: v for k, v in r.items()}) for r in rows]

    async def get(self, project: str, provider_id: str) -> StoredCredential | None:
        found = [c for c in await self.all(project) if c.provider_id == provider_id]
        return found[0] if found else None

    async def put(
        self, kek: bytes, row: dict[str, Any], plaintext: bytes, audit: AuditEntry
    ) -> StoredCredential:
        """Insert or replace (project, provider_id)'s credential."""
        aad = credential_aad(row["project"], row["provider_id"])
        values = {**row, "sealed": seal(kek, plaintext, aad)}
        key = (_T.c.project == row["project"], _T.c.provider_id == row["provider_id"])
        async with self._engine.begin() as conn:
            await conn.execute(delete(_T).where(*key))
            await conn.execute(_T.insert().values(**values))
            await config_version.bump(conn)
            await audit_repo.write(conn, audit)
        return StoredCredential(**values)

    async def delete(self, project: str, provider_id: str, audit: AuditEntry) -> bool:
        key = (_T.c.project == project, _T.c.provider_id == provider_id)
        async with self._engine.begin() as conn:
            gone = (await conn.execute(delete(_T).where(*key))).rowcount
            if gone:
                await config_version.bump(conn)
                await audit_repo.write(conn, audit)
        return bool(gone)

    async def rekey(self, old: bytes, new: bytes) -> int:
        """Re-seal every row under ``new``, in one transaction: all rows move, or none."""
        async with self._engine.begin() as conn:
            rows = (await conn.execute(select(_T).with_for_update())).mappings().all()
            for r in rows:
                aad = credential_aad(r["project"], r["provider_id"])
                sealed = seal(new, unseal(old, r["sealed"], aad), aad)
                await conn.execute(
                    update(_T)
                    .where(_T.c.project == r["project"], _T.c.provider_id == r["provider_id"])
                    .values(sealed=sealed)
                )
        return len(rows)
