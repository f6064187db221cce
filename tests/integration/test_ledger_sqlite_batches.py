"""The SQLite batch writers cut a batch into a few fixed statement shapes: every row of any
batch length lands exactly once, and the shapes stay few enough to be cached."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from sluice.base.settlement import Settlement
from sluice.store import sqlite_batches
from sluice.store.db import create_engine, migrate
from sluice.store.ledger_sqlite import LEDGER_INSERT, SqliteLedgerWriter
from sluice.store.tables import ledger


def test_every_batch_length_is_a_sum_of_cached_shapes() -> None:
    for rows in range(0, 2_100):
        chunks = list(sqlite_batches.chunks(rows))
        assert sum(size for _, size in chunks) == rows
        assert [start for start, _ in chunks] == [
            sum(s for _, s in chunks[:i]) for i in range(len(chunks))
        ]
        assert {size for _, size in chunks} <= set(sqlite_batches.CHUNK_ROWS)
        assert len(chunks) <= rows // 512 + len(sqlite_batches.CHUNK_ROWS)
    assert len(LEDGER_INSERT.statements) <= 100  # sqlite3's statement cache holds 128


async def test_odd_batches_write_every_row_once(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    writer = SqliteLedgerWriter(str(path))
    sizes = [1, 3, 200, 217, 513, 1_000]
    n = 0
    for size in sizes:
        batch = [
            Settlement(
                request_id=f"req_{n + i:05d}", created_at=n + i, endpoint="messages", status=200
            )
            for i in range(size)
        ]
        n += size
        await writer.write(batch, {})
    await writer.write(batch, {})  # a retried batch: idempotent on the request id
    await writer.close()
    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(ledger))
        distinct = await conn.scalar(select(func.count(func.distinct(ledger.c.request_id))))
    await engine.dispose()
    assert count == distinct == sum(sizes)
