"""Engine creation and schema migration (Alembic, run programmatically at start-up)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """Map the plain URLs users write to the async drivers we ship."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    if url.startswith(("postgresql:", "postgres:")):
        return "postgresql+asyncpg:" + url.split(":", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the CLI read while the server writes; busy_timeout rides out short locks
    # between the server's ledger batches and CLI commands.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    full = async_url(url)
    if full.startswith("sqlite"):
        engine = create_async_engine(full)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(full, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _upgrade(connection: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; creates the database on first start."""
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            # Replicas starting together must not race each other's DDL.
            await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7415021)")
            await conn.run_sync(_upgrade)
        return
    # SQLite has no advisory lock: two processes starting on a fresh file may collide; the
    # loser retries and then finds the schema already at head.
    for attempt in range(5):
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
            return
        except OperationalError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
