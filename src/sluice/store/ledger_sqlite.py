"""Ledger batches on SQLite, written by the stdlib driver on one thread of their own.

Durable acknowledgement commits far more often than the batch timer did. Through SQLAlchemy
and aiosqlite a transaction is half a dozen thread hops (checkout, BEGIN, INSERT, UPDATE,
COMMIT, reset); here it is one hop, and the statements run in C. WAL with
``synchronous=NORMAL``, as for the engine: a commit survives a killed process, not a power cut.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import sqlite

from sluice.store.tables import ledger

_DIALECT = sqlite.dialect(paramstyle="named")


def _insert_sql(columns: tuple[str, ...]) -> str:
    """The idempotent multi-row insert for rows with these keys, as SQLite text."""
    statement = (
        sqlite.insert(ledger)
        .values({name: bindparam(name) for name in columns})
        .on_conflict_do_nothing(index_elements=["request_id"])
    )
    return str(statement.compile(dialect=_DIALECT))


class SqliteLedgerWriter:
    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-ledger")
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread
        self._sql: dict[tuple[str, ...], str] = {}

    async def write(self, rows: list[dict[str, Any]], last_used: dict[str, int]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._write, rows, last_used)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=5.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._conn = conn
        return conn

    def _write(self, rows: list[dict[str, Any]], last_used: dict[str, int]) -> None:
        conn = self._conn or self._connect()
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(row), []).append(row)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for columns, values in groups.items():
                sql = self._sql.get(columns) or self._sql.setdefault(columns, _insert_sql(columns))
                conn.executemany(sql, values)
            conn.executemany(
                "UPDATE virtual_keys SET last_used_at = ? WHERE id = ?",
                [(at, key_id) for key_id, at in last_used.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
