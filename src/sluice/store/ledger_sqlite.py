"""Ledger batches on SQLite, written by the stdlib driver on one thread of their own
(``sqlite_batches.py``).

Durable acknowledgement without a journal commits far more often than the batch timer did:
through SQLAlchemy and aiosqlite a transaction is half a dozen thread hops; here it is one.
"""

from __future__ import annotations

import sqlite3

from sluice.base.settlement import LEDGER_COLUMNS, LEDGER_VALUES, Settlement
from sluice.store.sqlite_batches import BatchInsert, SqliteThread
from sluice.store.tables import ledger

# Every settlement fills every column: one row shape, checked once at import.
LEDGER_INSERT = BatchInsert(ledger, LEDGER_COLUMNS, "ON CONFLICT (request_id) DO NOTHING")


class SqliteLedgerWriter:
    def __init__(self, path: str) -> None:
        self._thread = SqliteThread(path, "sluice-ledger")

    async def write(self, settled: list[Settlement], last_used: dict[str, int]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            LEDGER_INSERT.run(conn, settled, LEDGER_VALUES)
            for key_id, at in last_used.items():
                conn.execute("UPDATE virtual_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

        await self._thread.run(work)

    async def close(self) -> None:
        await self._thread.close()
