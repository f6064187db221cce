"""The config version and the replicas that acknowledge it.

Every key or budget write calls ``bump`` in its own transaction, so the version and the change
commit together. Each gateway process keeps a ``replicas`` row with the version it has applied
and a heartbeat; the CLI waits until every live replica has applied its change. Heartbeats use
the database's clock, so clock skew between hosts cannot make a live replica look dead.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, literal_column, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from sluice.store.tables import config_version, replicas

CHANNEL = "sluice_config"  # PostgreSQL NOTIFY channel, sent with every bump
HEARTBEAT_S = 1.0  # how often a gateway says it is alive
LIVE_WITHIN_MS = 3_000  # a replica silent for longer is taken for dead (crashed)
FORGET_AFTER_MS = 24 * 3600 * 1000  # rows of replicas long gone are removed at start


def db_now_ms(dialect: str) -> ColumnElement[int]:
    if dialect == "postgresql":
        return literal_column("(extract(epoch from clock_timestamp()) * 1000)::bigint")
    return literal_column("CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)")


async def bump(conn: AsyncConnection) -> None:
    """Call inside the transaction that changes a key or a budget."""
    await conn.execute(
        update(config_version)
        .where(config_version.c.id == 1)
        .values(version=config_version.c.version + 1)
    )
    if conn.dialect.name == "postgresql":
        # Delivered on commit, to every listening gateway.
        await conn.execute(text(f"NOTIFY {CHANNEL}"))


async def current(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(config_version.c.version).where(config_version.c.id == 1)
        return int((await conn.execute(query)).scalar_one())


async def register(engine: AsyncEngine, replica_id: str, applied: int) -> None:
    now = db_now_ms(engine.dialect.name)
    async with engine.begin() as conn:
        await conn.execute(delete(replicas).where(replicas.c.heartbeat_at < now - FORGET_AFTER_MS))
        await conn.execute(
            insert(replicas).values(id=replica_id, heartbeat_at=now, applied_version=applied)
        )


async def heartbeat(engine: AsyncEngine, replica_id: str, applied: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(replicas)
            .where(replicas.c.id == replica_id)
            .values(heartbeat_at=db_now_ms(engine.dialect.name), applied_version=applied)
        )


async def unregister(engine: AsyncEngine, replica_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(replicas).where(replicas.c.id == replica_id))


async def lagging(engine: AsyncEngine, version: int) -> list[str]:
    """Live replicas that have not yet applied ``version``."""
    now = db_now_ms(engine.dialect.name)
    query = select(replicas.c.id).where(
        replicas.c.heartbeat_at >= now - LIVE_WITHIN_MS, replicas.c.applied_version < version
    )
    async with engine.connect() as conn:
        return [str(r) for r in (await conn.execute(query)).scalars().all()]


@dataclass(frozen=True)
class Acknowledged:
    version: int
    lagging: list[str]  # replicas that did not apply it in time (empty: all did)


async def wait_applied(engine: AsyncEngine, version: int, timeout_s: float) -> Acknowledged:
    """Wait until every live replica has applied ``version`` (at once when none runs)."""
    deadline = time.monotonic() + timeout_s
    while True:
        behind = await lagging(engine, version)
        if not behind or time.monotonic() >= deadline:
            return Acknowledged(version, behind)
        await asyncio.sleep(0.01)
