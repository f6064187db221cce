"""The ledger writer: one row per request, written off the request path in batches.

``record`` never blocks and never awaits. A background task drains the buffer every
``flush_interval_ms`` (or sooner when a batch fills) with one multi-row insert, idempotent on
the request id. ``stop`` flushes what is left, so a clean shutdown loses nothing.

``commit`` is the durable variant (the default, ``ledger.acknowledge_after_commit``). With a
local journal (SQLite's default, ``store/ledger_journal.py``) it appends the row there and
returns: as durable as the SQLite file, at the cost of one small write. Otherwise it wakes the
writer and waits for the transaction that holds its row. Requests that finish while a
transaction is in flight all ride the next one and await one shared future (group commit),
so under load a transaction carries many rows and a request pays one await.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.base.settlement import Settlement
from sluice.store.ledger_journal import LedgerJournal, Segment, orphans
from sluice.store.ledger_postgres import PostgresLedgerWriter
from sluice.store.ledger_sqlite import SqliteLedgerWriter
from sluice.store.sqlite_batches import sqlite_file
from sluice.store.tables import ledger, virtual_keys

log = logging.getLogger("sluice.ledger")


class LedgerWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_size: int = 200,
        flush_interval_ms: int = 200,
        max_queue: int = 100_000,
        journal: LedgerJournal | None = None,
    ) -> None:
        self._engine = engine
        self._journal = journal
        self._segments: list[Segment] = []  # rotated journal segments not yet committed
        self._direct = _direct_writer(engine)
        self._batch_size = batch_size
        self._interval = flush_interval_ms / 1000
        self._max_queue = max_queue
        self._buffer: list[Settlement] = []  # turned into rows off the request path
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = False
        # Resolved when the batch now being buffered is committed (or its write failed).
        self._batch_done: asyncio.Future[None] | None = None
        # key id -> last use: written at most once per interval, not with every batch.
        self._last_used: dict[str, int] = {}
        self._last_used_at = 0.0
        self.dropped = 0
        self.transactions = 0
        self.written = 0

    def record(self, settlement: Settlement) -> None:
        if len(self._buffer) >= self._max_queue:
            # Bounded memory when the database is down for long; counted and logged.
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("ledger queue full (%d rows); dropped %d", self._max_queue, self.dropped)
            return
        self._buffer.append(settlement)
        if self._journal is not None:
            self._journal.append(settlement)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    async def commit(self, settlement: Settlement) -> None:
        """Record ``settlement`` durably: in the journal when there is one, else by waiting
        until the batch holding it is committed (group commit: requests finishing together
        share one transaction)."""
        if self._journal is not None:
            self.record(settlement)
            return
        done = self._batch_done
        if done is None:
            done = self._batch_done = asyncio.get_running_loop().create_future()
        self.record(settlement)
        self._wake.set()
        await asyncio.shield(done)  # shared: one request's cancellation must not cancel it

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def recover(self) -> int:
        """Insert the rows of journal segments a killed process left (before serving)."""
        if self._journal is None:
            return 0
        with orphans(self._journal.directory) as found:
            rows = [row for _, segment_rows in found for row in segment_rows]
            if rows:
                await self._write(rows)
                log.warning(
                    "ledger: %d rows recovered from the journal of a stopped process", len(rows)
                )
            self._journal.release([Segment(path) for path, _ in found])
        return len(rows)

    def start(self) -> None:
        if self._journal is not None:
            self._journal.open()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        # Never cancel a flush in flight: a write cut off mid-transaction can leave SQLite
        # locked for the final flush. Ask the loop to finish instead, then flush the rest.
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()
        if self._journal is not None:
            # Committed rows' segments go; rows a failing database kept stay for the next start.
            if not self._buffer:
                self._journal.release(self._segments)
                self._segments = []
            self._journal.close(delete=not self._buffer)
        if self._direct is not None:
            await self._direct.close()

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # keep rows; try again next tick
                log.exception("ledger flush failed; %d rows kept for retry", len(self._buffer))

    async def flush(self) -> None:
        """Write what is buffered now, in one transaction. Rows that arrive meanwhile wait for
        the next tick: looping until empty would keep the writer busy under load, costing
        the request path far more than it saves."""
        async with self._lock:
            # The journal's segments hold exactly this batch's rows: a new one starts now,
            # first, so that a failure to start it (a full disk) leaves rows and segments kept.
            rotated = self._journal.rotate() if self._journal is not None and self._buffer else []
            batch, self._buffer = self._buffer, []
            done, self._batch_done = self._batch_done, None
            segments, self._segments = self._segments + rotated, []
            try:
                if batch or (self._closing and self._last_used):
                    await self._write(batch)
            except BaseException:
                self._buffer[:0] = batch  # keep them for the next attempt
                for segment in segments:  # and their journal, until they are committed
                    segment.unmap()  # a failing database may keep them long: no spare room
                self._segments[:0] = segments
                raise
            finally:
                # Never hold a response forever on a failing database: the rows stay queued
                # (and the failure is logged by the caller).
                if done is not None and not done.done():
                    done.set_result(None)
            if self._journal is not None:
                self._journal.release(segments)
            self.written += len(batch)

    async def _write(self, settled: list[Settlement]) -> None:
        dialect = self._engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(ledger).on_conflict_do_nothing(index_elements=["request_id"])
        for one in settled:
            if one.vk_id and one.status < 400:
                key_id = one.vk_id
                self._last_used[key_id] = max(one.created_at, self._last_used.get(key_id, 0))
        # Durable acknowledgement flushes far more often than the interval; last_used_at is
        # not worth an UPDATE per key in each of those transactions.
        now = time.monotonic()
        last_used: dict[str, int] = {}
        if self._closing or now - self._last_used_at >= self._interval:
            last_used, self._last_used, self._last_used_at = self._last_used, {}, now
        try:
            if self._direct is not None:
                await self._direct.write(settled, last_used)
                self.transactions += 1
                return
            async with self._engine.begin() as conn:
                for start in range(0, len(settled), self._batch_size):
                    chunk = settled[start : start + self._batch_size]
                    await conn.execute(statement, [one.ledger_row() for one in chunk])
                for key_id, at in last_used.items():
                    await conn.execute(
                        update(virtual_keys)
                        .where(virtual_keys.c.id == key_id)
                        .values(last_used_at=at)
                    )
        except BaseException:
            for key_id, at in last_used.items():  # not written: try again with the next batch
                self._last_used[key_id] = max(at, self._last_used.get(key_id, 0))
            raise
        self.transactions += 1


def _direct_writer(engine: AsyncEngine) -> SqliteLedgerWriter | PostgresLedgerWriter | None:
    """The driver's own batch path, when there is one (else rows go through SQLAlchemy).
    asyncpg's needs the engine's arguments to be asyncpg's (the default for postgresql://)."""
    path = sqlite_file(engine.dialect.name, engine.url.database)
    if path is not None:
        return SqliteLedgerWriter(path)
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg":
        return PostgresLedgerWriter(engine)
    return None
