"""The ledger's journal (durable acknowledgement on SQLite): rows survive a process that died
before committing them, a torn last frame is dropped, a live process's segment is never
taken, and a clean stop leaves nothing behind."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy import select

from sluice.base.settlement import Settlement
from sluice.store.db import create_engine, migrate
from sluice.store.ledger import LedgerWriter
from sluice.store.ledger_journal import LedgerJournal, orphans
from sluice.store.tables import ledger


def _row(n: int) -> Settlement:
    return Settlement(
        request_id=f"req_{n:04d}", created_at=1_000 + n, endpoint="messages", status=200,
        input_tokens=n, cost_micros=n * 10, ingress="bedrock",
    )  # fmt: skip


async def _ids(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(ledger.c.request_id).order_by(ledger.c.request_id))
            return [r[0] for r in rows]
    finally:
        await engine.dispose()


async def test_a_dead_writers_rows_are_recovered_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    where = tmp_path / "journal"
    engine = create_engine(url)
    await migrate(engine)
    # A "dead" process: its segment holds three rows and half of a fourth, and no lock.
    dead = LedgerJournal(where)
    dead.open()
    for n in range(3):
        dead.append(_row(n))
    with open(dead._path, "ab") as torn:  # type: ignore[arg-type]
        torn.write((500).to_bytes(4, "big") + b"\x93partial")
    dead.close(delete=False)
    # A live process's segment, locked: never taken.
    live = LedgerJournal(where)
    live.open()
    live.append(_row(9))

    writer = LedgerWriter(engine, journal=LedgerJournal(where))
    assert await writer.recover() == 3
    writer.start()
    writer.record(_row(5))
    await writer.stop()
    await engine.dispose()
    assert await _ids(url) == ["req_0000", "req_0001", "req_0002", "req_0005"]
    remaining = sorted(p.name for p in where.glob("*.journal"))
    assert remaining == [live._path.name]  # type: ignore[union-attr]
    with orphans(where) as found:
        assert found == []  # still locked by `live`
    live.close(delete=False)
    with orphans(where) as found:
        assert [[r.request_id for r in rows] for _, rows in found] == [["req_0009"]]


async def test_durable_commit_returns_without_waiting_and_the_journal_empties(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    engine = create_engine(url)
    await migrate(engine)
    where = tmp_path / "journal"
    writer = LedgerWriter(engine, flush_interval_ms=600_000, journal=LedgerJournal(where))
    writer.start()
    for n in range(20):
        await writer.commit(_row(n))  # no transaction per call: the journal holds them
    assert writer.transactions == 0
    [segment] = list(where.glob("*.journal"))
    assert segment.stat().st_size > 20 * 50
    fd = os.open(segment, os.O_RDONLY)
    try:  # held by this live writer
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("a live segment must be locked")
        except BlockingIOError:
            pass
    finally:
        os.close(fd)
    await writer.flush()
    assert writer.transactions == 1 and not segment.exists()  # committed: its segment goes
    await writer.stop()
    await engine.dispose()
    assert len(await _ids(url)) == 20
    assert list(where.glob("*.journal")) == []  # a clean stop leaves nothing
