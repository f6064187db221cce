"""Ledger batches on SQLite, written by the stdlib driver on one thread of their own.

Durable acknowledgement commits far more often than the batch timer did. Through SQLAlchemy
and aiosqlite a transaction is half a dozen thread hops (checkout, BEGIN, INSERT, UPDATE,
COMMIT, reset); here it is one hop, and the statements run in C. WAL with
``synchronous=NORMAL``, as for the engine: a commit survives a killed process, not a power cut.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

from sluice.base.settlement import LEDGER_COLUMNS, LEDGER_VALUES, Settlement
from sluice.store.tables import ledger

_ON_CONFLICT = " ON CONFLICT (request_id) DO NOTHING"
# Rows per statement, largest first; a batch is cut into these sizes (a binary decomposition),
# so ten statement shapes cover every batch and stay in sqlite3's statement cache. A shape per
# batch length made SQLite parse and plan a new statement of thousands of parameters for
# nearly every batch. 512 rows bind well under SQLite's 32,766 variables.
_CHUNK_ROWS = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1)


def _insert_prefix(columns: tuple[str, ...]) -> tuple[str, str]:
    """``INSERT INTO ledger (...) VALUES`` and one row's ``(?, ...)`` for rows with these keys.
    Names are checked against the table; values are always bound."""
    unknown = set(columns) - set(ledger.c.keys())
    if unknown:
        raise ValueError(f"not ledger columns: {sorted(unknown)}")
    names = ", ".join(f'"{name}"' for name in columns)
    insert = f"INSERT INTO ledger ({names}) VALUES "  # noqa: S608 (names checked, values bound)
    return insert, "(" + ", ".join("?" * len(columns)) + ")"


# Every settlement fills every column: one row shape, checked once at import.
_INSERT, _ONE_ROW = _insert_prefix(LEDGER_COLUMNS)
_STATEMENTS = {n: _INSERT + ", ".join([_ONE_ROW] * n) + _ON_CONFLICT for n in _CHUNK_ROWS}


def _chunks(rows: int) -> Iterator[tuple[int, int]]:
    """(start, length) of each statement's rows: ``rows`` as a sum of ``_CHUNK_ROWS``."""
    start = 0
    while start < rows:
        size = next(n for n in _CHUNK_ROWS if n <= rows - start)
        yield start, size
        start += size


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
        for start, size in _chunks(len(settled)):
            values = chain.from_iterable(map(LEDGER_VALUES, settled[start : start + size]))
            conn.execute(_STATEMENTS[size], list(values))
        for key_id, at in last_used.items():
            conn.execute("UPDATE virtual_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
