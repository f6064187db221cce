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

from sluice.base.settlement import LEDGER_COLUMNS, Settlement
from sluice.store.tables import ledger

_ON_CONFLICT = " ON CONFLICT (request_id) DO NOTHING"
_MAX_ROWS = 500  # rows per statement: well under SQLite's 32,766 bound variables


def _insert_prefix(columns: tuple[str, ...]) -> tuple[str, str]:
    """``INSERT INTO ledger (...) VALUES`` and one row's ``(?, ...)`` for rows with these keys.
    Names are checked against the table; values are always bound."""
    unknown = set(columns) - set(ledger.c.keys())
    if unknown:
        raise ValueError(f"not ledger columns: {sorted(unknown)}")
    names = ", ".join(f'"{name}"' for name in columns)
    insert = f"INSERT INTO ledger ({names}) VALUES "  # noqa: S608 (names checked, values bound)
    return insert, "(" + ", ".join("?" * len(columns)) + ")"


# Every settlement fills every column: one statement shape, checked once at import.
_INSERT, _ONE_ROW = _insert_prefix(LEDGER_COLUMNS)


class SqliteLedgerWriter:
    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-ledger")
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread

    async def write(self, settled: list[Settlement], last_used: dict[str, int]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._write, settled, last_used)

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

    def _write(self, settled: list[Settlement], last_used: dict[str, int]) -> None:
        # Autocommit, one multi-row INSERT per batch: a statement is its own transaction and
        # one sqlite3_step, so the thread takes the GIL back about once per batch rather than
        # once per row (each take can wait a switch interval while the event loop is busy).
        conn = self._conn or self._connect()
        for start in range(0, len(settled), _MAX_ROWS):
            chunk = settled[start : start + _MAX_ROWS]
            sql = _INSERT + ", ".join([_ONE_ROW] * len(chunk)) + _ON_CONFLICT
            conn.execute(sql, [value for one in chunk for value in one.ledger_values()])
        for key_id, at in last_used.items():
            conn.execute("UPDATE virtual_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
