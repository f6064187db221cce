"""The ledger's journal (durable acknowledgement on SQLite): rows survive a process that died
before committing them, a torn last frame is dropped, a live process's segment is never
taken, and a clean stop leaves nothing behind."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.base.settlement import Settlement
from sluice.store.db import create_engine, migrate
from sluice.store.ledger import LedgerWriter
from sluice.store.ledger_journal import LedgerJournal, Segment, orphans
from sluice.store.tables import ledger


def _row(n: int) -> Settlement:
    return Settlement(
        request_id=f"req_{n:04d}", created_at=1_000 + n, endpoint="messages", status=200,
        input_tokens=n, cost_micros=n * 10, ingress="bedrock",
    )  # fmt: skip


def _filled(where: Path) -> LedgerJournal:
    """An open journal of tiny segments holding rows 0-19: several full segments and a live one."""
    journal = LedgerJournal(where, segment_bytes=200)
    journal.open()
    for n in range(20):
        journal.append(_row(n))
    return journal


TWENTY = [f"req_{n:04d}" for n in range(20)]


def _live(journal: LedgerJournal) -> Segment:
    assert journal._live is not None
    return journal._live


async def _database(tmp_path: Path) -> tuple[str, AsyncEngine, Path]:
    """A migrated SQLite ledger, and where its journal goes."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    engine = create_engine(url)
    await migrate(engine)
    return url, engine, tmp_path / "journal"


def _started(engine: AsyncEngine, journal: LedgerJournal) -> LedgerWriter:
    """A writer that flushes only when told to."""
    writer = LedgerWriter(engine, flush_interval_ms=600_000, journal=journal)
    writer.start()
    return writer


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
    path = _live(dead).path
    dead.close(delete=False)  # cut to its frames
    with open(path, "ab") as torn:
        torn.write((500).to_bytes(4, "big") + b"\x93partial")
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
    assert remaining == [_live(live).path.name]
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
    assert writer.transactions == 1
    # Committed: the segment is zeroed and kept for reuse (no file made or deleted per flush).
    assert segment.read_bytes() == bytes(segment.stat().st_size)
    await writer.stop()
    await engine.dispose()
    assert len(await _ids(url)) == 20
    assert list(where.glob("*.journal")) == []  # a clean stop leaves nothing


async def test_rows_past_a_full_segment_continue_in_a_new_one_and_commit_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    engine = create_engine(url)
    await migrate(engine)
    where = tmp_path / "journal"
    # Room for one or two rows a segment: 20 rows fill several before the first flush.
    journal = LedgerJournal(where, segment_bytes=200)
    writer = LedgerWriter(engine, flush_interval_ms=600_000, journal=journal)
    writer.start()
    for n in range(20):
        await writer.commit(_row(n))
    sealed = [p for p in where.glob("*.journal") if p != _live(journal).path]
    assert len(sealed) > 5
    await writer.flush()
    # Committed: deleted, but for two kept zeroed for reuse.
    left = [p for p in where.glob("*.journal") if p != _live(journal).path]
    assert len(left) == 2 and all(p.read_bytes() == bytes(p.stat().st_size) for p in left)
    await writer.stop()
    await engine.dispose()
    assert await _ids(url) == TWENTY


def test_a_dead_processes_full_segments_hold_every_row_once(tmp_path: Path) -> None:
    where = tmp_path / "journal"
    dead = _filled(where)
    for segment in [*dead._sealed, _live(dead)]:  # it dies: its locks go with its descriptors
        assert segment.mapped is not None
        segment.mapped.close()  # (the mapping holds a descriptor of its own)
        os.close(segment.fd)
    with orphans(where) as found:
        assert len(found) > 5
        recovered = sorted(r.request_id for _, rows in found for r in rows)
    assert recovered == TWENTY


def test_a_stop_that_keeps_its_rows_keeps_every_segment_cut_to_its_frames(tmp_path: Path) -> None:
    where = tmp_path / "journal"
    journal = _filled(where)
    journal.close(delete=False)  # the database was failing: the rows stay for the next start
    kept = list(where.glob("*.journal"))
    assert len(kept) > 5 and all(0 < p.stat().st_size < 200 for p in kept)
    with orphans(where) as found:  # no longer held: the next start takes them
        assert sorted(r.request_id for _, rows in found for r in rows) == TWENTY


def test_a_rotation_with_no_new_row_starts_no_segment(tmp_path: Path) -> None:
    """A failing database's writer retries every tick: no file per retry."""
    where = tmp_path / "journal"
    journal = LedgerJournal(where)
    journal.open()
    journal.append(_row(1))
    first = journal.rotate()
    assert len(first) == 1
    assert journal.rotate() == [] and journal.rotate() == []
    assert len(list(where.glob("*.journal"))) == 2
    journal.release(first)
    journal.close(delete=True)
    assert list(where.glob("*.journal")) == []


async def test_a_segment_that_cannot_be_started_loses_no_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk when the flush starts the next segment: the rows stay buffered and in
    their segment, and the next flush commits them once."""
    url, engine, where = await _database(tmp_path)
    journal = LedgerJournal(where)
    writer = _started(engine, journal)
    for n in range(3):
        await writer.commit(_row(n))

    def full(size: int) -> Segment:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # a real full disk is out of a test's reach
        patch.setattr(journal, "_fresh", full)
        with pytest.raises(OSError):
            await writer.flush()
    assert writer.pending == 3
    live = _live(journal)
    assert live.used > 0  # its rows are still in the live segment, not zeroed or deleted
    await writer.flush()
    assert await _ids(url) == ["req_0000", "req_0001", "req_0002"]
    await writer.stop()
    await engine.dispose()
    assert list(where.glob("*.journal")) == []


def test_a_frame_killed_mid_copy_ends_the_segment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The payload is copied before its length: a process killed between the two leaves a
    zero length, read as the segment's end, not as a frame."""
    where = tmp_path / "journal"
    dead = LedgerJournal(where)
    dead.open()
    dead.append(_row(1))
    segment = _live(dead)
    path, mapped, used = segment.path, segment.mapped, segment.used
    assert mapped is not None
    assert path.stat().st_size > used  # preallocated: the rest is zeros
    mapped[used + 4 : used + 12] = b"\x93partial"  # the next payload, its length not yet
    fcntl.flock(segment.fd, fcntl.LOCK_UN)  # the process is gone: no lock, no truncation
    with caplog.at_level(logging.WARNING), orphans(where) as found:
        assert [[r.request_id for r in rows] for _, rows in found] == [["req_0001"]]
    assert caplog.records == []  # an end, not a torn or unreadable frame
    dead.close(delete=True)


async def test_reused_segments_hold_only_rows_not_yet_committed(tmp_path: Path) -> None:
    """Segments are zeroed when committed and reused: after many flushes a killed process's
    segments give back exactly the rows it had not committed, none from earlier batches."""
    url, engine, where = await _database(tmp_path)
    journal = LedgerJournal(where)
    writer = _started(engine, journal)
    for batch in range(6):
        for n in range(batch * 10, batch * 10 + 10 - batch):  # shorter and shorter batches
            await writer.commit(_row(n))
        await writer.flush()
    assert len(list(where.glob("*.journal"))) == 2  # two segments take turns
    for n in (100, 101, 102):
        await writer.commit(_row(n))
    segments = [_live(journal), *journal._spare]
    for segment in segments:  # killed: no truncation, no deletion, the locks go
        assert segment.mapped is not None
        segment.mapped.close()
        os.close(segment.fd)
    with orphans(where) as found:
        recovered = sorted(r.request_id for _, rows in found for r in rows)
    assert recovered == ["req_0100", "req_0101", "req_0102"]
    assert len(await _ids(url)) == sum(10 - b for b in range(6))
    writer._journal = None  # its segments are gone with the "killed" process
    writer._buffer = []
    await writer.stop()
    await engine.dispose()
