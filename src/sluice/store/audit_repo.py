"""The audit log: one row per admin mutation, written in the transaction of the change.

Secrets never reach it: ``redact`` drops hashes and secrets and shortens webhook URLs (a
Slack webhook URL is itself a credential) before a row is written, whatever the caller passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from ulid import ULID

from sluice.store.tables import audit_log

# Never written, at any depth.
_SECRET_FIELDS = frozenset(
    {"key", "key_hash", "previous_key_hash", "token", "token_hash", "secret", "webhook_secret"}
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str  # keys.create, budgets.reset, tokens.revoke, …
    resource: str  # key | budget | admin_token
    resource_id: str | None
    project: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    at: int = 0
    id: str = field(default_factory=lambda: str(ULID()))


def _short_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…" if parts.scheme else "…"


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for name, item in value.items():
            if name in _SECRET_FIELDS:
                continue
            if name == "webhook_url" and isinstance(item, str):
                out[name] = _short_url(item)
            else:
                out[name] = redact(item)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _dump(doc: dict[str, Any] | None) -> str | None:
    return None if doc is None else orjson.dumps(redact(doc)).decode()


async def write(conn: AsyncConnection, entry: AuditEntry) -> None:
    """Call inside the transaction that makes the change."""
    await conn.execute(
        audit_log.insert().values(
            id=entry.id,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            resource=entry.resource,
            resource_id=entry.resource_id,
            project=entry.project,
            before=_dump(entry.before),
            after=_dump(entry.after),
        )
    )


def _public(row: RowMapping) -> dict[str, Any]:
    data = dict(row)
    for name in ("before", "after"):
        data[name] = orjson.loads(data[name]) if data[name] is not None else None
    return data


async def page(
    engine: AsyncEngine, limit: int, cursor: str | None, project: str | None
) -> list[dict[str, Any]]:
    """Newest first; ``cursor`` is the last id of the previous page (ULIDs sort by time)."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if cursor is not None:
        query = query.where(audit_log.c.id < cursor)
    if project is not None:
        query = query.where(audit_log.c.project == project)
    async with engine.connect() as conn:
        return [_public(r) for r in (await conn.execute(query)).mappings().all()]
