"""The span sink: a separate process that builds spans, stores them and exports them over OTLP.

Building a request's spans, writing them to the local store and encoding OTLP cost more CPU
than the rest of tracing together. So the gateway process only detects the turn and hands
finished requests (``spans.Finished``), in batches, to this child process (spawned, one per
gateway process), which builds the spans (``telemetry.builder``), writes them to the trace
store and exports them (``telemetry.export``). Each hand-off is one pipe round trip from a
worker thread; the event loop never waits on it.

Bounded everywhere: the gateway keeps at most ``queue_size`` requests (and ``queue_bytes`` of
captured content) waiting for the child, dropping and counting the excess, and the child's
export lanes are bounded by ``export_queue_size`` spans the same way. A child that dies is
started again for the next batch; the batch in hand is counted as dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import uvloop

from sluice.base.heap import freeze_startup_heap
from sluice.config.models import TracingConfig
from sluice.telemetry.spans import Finished

log = logging.getLogger("sluice.telemetry")

_NICENESS = 10
# The hand-over format: finished requests as JSON (their dataclasses, encoded by msgspec in C).
RECORDS = msgspec.json.Encoder()
_RECORDS_DECODER = msgspec.json.Decoder(list[Finished])
_STATS = ("stored", "store_failed", "exported", "export_failed", "export_dropped", "export_queue")


class SpanSink:
    """The gateway side: a bounded buffer of finished requests, drained to the sink process
    every ``flush_interval_ms`` (or as soon as a batch is full)."""

    def __init__(self, cfg: TracingConfig, database_url: str | None, env: Mapping[str, str]):
        self._cfg = cfg
        self._database_url = database_url if cfg.store else None
        self._env = dict(env)
        self._buffer: deque[Finished] = deque()
        self._buffered_bytes = 0  # captured content the buffer keeps alive
        self._wake = asyncio.Event()
        self._busy = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._proc: Any = None  # multiprocessing's SpawnProcess (untyped)
        self._conn: Connection | None = None
        self._pipe_lock = threading.Lock()  # one round trip at a time (drain vs flush)
        self.dropped = 0  # requests lost: in hand when the child died, or queued at stop
        self.child: dict[str, int] = dict.fromkeys(_STATS, 0)  # the child's last counters

    # -- the gateway side ----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain())

    def offer(self, record: Finished) -> bool:
        """Queue a finished request; False (nothing queued) when the buffer is full."""
        size = record.size
        if (
            len(self._buffer) >= self._cfg.queue_size
            or self._buffered_bytes + size > self._cfg.queue_bytes
        ):
            return False
        self._buffer.append(record)
        self._buffered_bytes += size
        if len(self._buffer) >= self._cfg.export_batch_size:
            self._wake.set()
        return True

    @property
    def waiting(self) -> int:
        """Requests queued in this process."""
        return len(self._buffer)

    @property
    def export_queue_depth(self) -> int:
        """Spans waiting in the child's export lanes."""
        return self.child["export_queue"]

    async def handed_over(self, wait_s: float) -> bool:
        """Hand over what is queued and wait until the child has taken all of it (its spans
        built, stored, offered to the export lanes: ``child`` counts them), not for the export."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        self._wake.set()
        while self._buffer or self._busy:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def idle(self, wait_s: float) -> bool:
        """Hand over what is queued, and wait until it is stored and exported (tests,
        shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        if not await self.handed_over(wait_s):
            return False
        if self._conn is None:
            return True
        self._busy = True
        try:
            reply = await asyncio.to_thread(self._call, ("flush", max(0.0, deadline - loop.time())))
        finally:
            self._busy = False
        return bool(reply and reply.get("idle"))

    async def stop(self, wait_s: float = 5.0) -> None:
        await self.idle(wait_s)
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self.dropped += len(self._buffer)
        self._buffer.clear()
        self._buffered_bytes = 0
        if self._conn is not None:
            await asyncio.to_thread(self._call, ("stop", wait_s))
        if self._proc is not None:
            await asyncio.to_thread(self._proc.join, 5)
            if self._proc.is_alive():
                self._proc.kill()

    async def _drain(self) -> None:
        interval = self._cfg.flush_interval_ms / 1000
        while True:
            if not self._buffer and self._closing:
                return
            if len(self._buffer) < self._cfg.export_batch_size and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
                self._wake.clear()
            while self._buffer:
                size = min(self._cfg.export_batch_size, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(size)]
                self._buffered_bytes -= sum(record.size for record in batch)
                # msgspec, here: ~2 µs a request where pickle took ~8 µs, in a thread holding
                # the GIL that the event loop then waited for.
                payload = RECORDS.encode(batch)
                self._busy = True
                try:
                    if await asyncio.to_thread(self._call, ("records", payload)) is None:
                        self.dropped += len(batch)
                finally:
                    self._busy = False

    def _call(self, message: tuple[str, Any]) -> dict[str, Any] | None:
        """One round trip to the child, in a worker thread; None when the child is gone (it
        is started again for the next message)."""
        try:
            with self._pipe_lock:
                if self._conn is None:
                    self._spawn()
                assert self._conn is not None
                self._conn.send(message)
                reply: dict[str, Any] = self._conn.recv()
        except (EOFError, OSError) as exc:
            log.error("trace sink process failed (%s); starting a new one", type(exc).__name__)
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return None
        self.child = {name: int(reply.get(name, 0)) for name in _STATS}
        return reply

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a running event loop
        parent, child = context.Pipe()
        self._proc = context.Process(
            target=run_sink,
            args=(child, self._cfg, self._database_url, self._env),
            name="sluice-trace-sink",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._conn = parent


# -- the sink process ---------------------------------------------------------------------


def run_sink(
    conn: Connection, cfg: TracingConfig, database_url: str | None, env: dict[str, str]
) -> None:
    """The child's entry point: serve the gateway's messages until it says stop or goes."""
    # Background work: where it shares a core with request serving (a gateway worker, or on a
    # small host anything on the request's way), the scheduler gives that the CPU first. A
    # starved sink falls behind into its bounded queues, which drop and count.
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)
    # uvloop, as the gateway: the sink's loop runs a thread hop or two per batch.
    uvloop.run(_serve(conn, cfg, database_url, env))


async def _serve(
    conn: Connection, cfg: TracingConfig, database_url: str | None, env: dict[str, str]
) -> None:
    # Imported here: the gateway process never loads the SDK.
    from sluice.store.db import create_engine
    from sluice.store.traces_repo import TracesRepo
    from sluice.telemetry.builder import SpanBuilder
    from sluice.telemetry.export import Exporter

    engine = create_engine(database_url) if database_url else None
    repo = TracesRepo(engine) if engine is not None else None
    builder = SpanBuilder(repo)
    exporter = Exporter(cfg, env)
    stored = store_failed = 0
    freeze_startup_heap()  # the SDK and SQLAlchemy out of the collector's passes

    def counters(**extra: Any) -> dict[str, Any]:
        return {
            "stored": stored,
            "store_failed": store_failed,
            "exported": exporter.exported,
            "export_failed": exporter.failed,
            "export_dropped": exporter.dropped,
            "export_queue": exporter.queue_depth,
            **extra,
        }

    try:
        while True:
            try:
                kind, payload = await asyncio.to_thread(conn.recv)
            except (EOFError, OSError):
                return  # the gateway is gone
            if kind == "records":
                spans = await builder.build(_RECORDS_DECODER.decode(payload))
                if repo is not None and spans:
                    try:
                        await repo.write_spans(spans)
                        stored += len(spans)
                    except Exception:
                        store_failed += len(spans)
                        logging.getLogger("sluice.telemetry").exception(
                            "trace store write failed; %d spans not stored", len(spans)
                        )
                exporter.submit(spans)
                conn.send(counters())
            elif kind == "flush":
                idle = await exporter.idle(float(payload))
                conn.send(counters(idle=idle))
            else:  # stop
                await exporter.stop(float(payload))
                conn.send(counters(idle=True))
                return
    finally:
        if repo is not None:
            await repo.close()
        if engine is not None:
            await engine.dispose()
