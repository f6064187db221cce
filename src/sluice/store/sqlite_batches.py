"""Row batches into SQLite, written by the stdlib driver on one thread of its own: the ledger
(``ledger_sqlite.py``) and the local trace store (``traces_repo.py``).

Through SQLAlchemy and aiosqlite a batch costs the statement's compilation, a parameter dict
per row, and half a dozen thread hops (checkout, BEGIN, INSERT, COMMIT, reset); here it is one
hop, and binding runs in C. Autocommit, one multi-row statement per chunk: a statement is its
own transaction and one ``sqlite3_step``, so the thread takes the GIL back about once per
chunk rather than once per row. WAL with ``synchronous=NORMAL``, as for the engine: a commit
survives a killed process, not a power cut.

A batch is cut into 512, 256, ... 1 rows (a binary decomposition), so ten statement shapes
cover every batch length and stay in sqlite3's statement cache; a shape per length made
SQLite parse and plan a new statement of thousands of parameters for nearly every batch.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import TypeVar

from sqlalchemy import Table

T = TypeVar("T")

# Rows per statement, largest first. 512 rows of the widest table (the ledger's 33 columns)
# bind well under SQLite's 32,766 variables.
CHUNK_ROWS = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1)


def chunks(rows: int) -> Iterator[tuple[int, int]]:
    """(start, length) of each statement's rows: ``rows`` as a sum of ``CHUNK_ROWS``."""
    start = 0
    while start < rows:
        size = next(n for n in CHUNK_ROWS if n <= rows - start)
        yield start, size
        start += size


class BatchInsert:
    """``INSERT INTO table (columns) VALUES (...), ... <conflict>`` in every chunk size.
    Column names are checked against the table; values are always bound."""

    def __init__(self, table: Table, columns: tuple[str, ...], conflict: str) -> None:
        unknown = set(columns) - set(table.c.keys())
        if unknown:
            raise ValueError(f"not {table.name} columns: {sorted(unknown)}")
        names = ", ".join(f'"{name}"' for name in columns)
        prefix = f'INSERT INTO "{table.name}" ({names}) VALUES '  # noqa: S608 (names checked)
        one_row = "(" + ", ".join("?" * len(columns)) + ")"
        self.statements = {
            n: prefix + ", ".join([one_row] * n) + " " + conflict for n in CHUNK_ROWS
        }

    def run(
        self, conn: sqlite3.Connection, rows: Sequence[T], values: Callable[[T], Iterable[object]]
    ) -> None:
        """Insert ``rows`` (each turned into its column values here, on the writer's thread)."""
        for start, size in chunks(len(rows)):
            flat = chain.from_iterable(map(values, rows[start : start + size]))
            conn.execute(self.statements[size], list(flat))


class SqliteThread:
    """One connection to a SQLite file, used only on a thread of its own."""

    def __init__(self, path: str, name: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread

    async def run(self, work: Callable[[sqlite3.Connection], None]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._run, work)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    def _run(self, work: Callable[[sqlite3.Connection], None]) -> None:
        work(self._conn or self._connect())

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=5.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._conn = conn
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def sqlite_file(dialect: str, database: str | None) -> str | None:
    """The path of a SQLite database file, or None (another database, or in memory)."""
    if dialect != "sqlite" or database in (None, "", ":memory:"):
        return None
    return database
