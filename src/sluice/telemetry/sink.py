"""The span sink: a separate process that stores spans and exports them over OTLP.

Encoding OTLP with the OpenTelemetry SDK costs ~90 µs of CPU per span and writing the local
store about as much again: more than the whole gateway spends on a request. So the gateway
process only builds spans and hands them, in batches, to this child process (spawned, one per
gateway process), which writes them to the trace store and exports them with the SDK
(``telemetry.export``). Each hand-off is one pipe round trip from a worker thread; the event
loop never waits on it.

Bounded everywhere: the gateway keeps at most ``export_queue_size`` spans waiting for the
child (the excess is dropped and counted), and the child's export lanes are bounded the same
way. A child that dies is started again for the next batch; the batch in hand is counted as
dropped.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections import deque
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from sluice.config.models import TracingConfig
from sluice.telemetry.spans import SpanRecord

log = logging.getLogger("sluice.telemetry")

_STATS = ("stored", "store_failed", "exported", "export_failed", "export_dropped", "export_queue")


class SpanSink:
    """The gateway side: a bounded buffer drained to the sink process."""

    def __init__(self, cfg: TracingConfig, database_url: str | None, env: Mapping[str, str]):
        self._cfg = cfg
        self._database_url = database_url if cfg.store else None
        self._env = dict(env)
        self._buffer: deque[SpanRecord] = deque()
        self._wake = asyncio.Event()
        self._busy = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._proc: Any = None  # multiprocessing's SpawnProcess (untyped)
        self._conn: Connection | None = None
        self._pipe_lock = threading.Lock()  # one round trip at a time (drain vs flush)
        self.dropped = 0
        self.child: dict[str, int] = dict.fromkeys(_STATS, 0)  # the child's last counters

    # -- the gateway side ----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain())

    def submit(self, spans: list[SpanRecord]) -> None:
        for span in spans:
            if len(self._buffer) >= self._cfg.export_queue_size:
                self.dropped += 1
            else:
                self._buffer.append(span)
        self._wake.set()

    @property
    def queue_depth(self) -> int:
        return len(self._buffer) + self.child["export_queue"]

    async def idle(self, wait_s: float) -> bool:
        """Wait until everything handed over is stored and exported (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self._buffer or self._busy:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
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
        if self._conn is not None:
            await asyncio.to_thread(self._call, ("stop", wait_s))
        if self._proc is not None:
            await asyncio.to_thread(self._proc.join, 5)
            if self._proc.is_alive():
                self._proc.kill()

    async def _drain(self) -> None:
        while True:
            if not self._buffer:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            size = min(self._cfg.export_batch_size, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(size)]
            self._busy = True
            try:
                if await asyncio.to_thread(self._call, ("spans", batch)) is None:
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
    asyncio.run(_serve(conn, cfg, database_url, env))


async def _serve(
    conn: Connection, cfg: TracingConfig, database_url: str | None, env: dict[str, str]
) -> None:
    # Imported here: the gateway process never loads the SDK.
    from sluice.store.db import create_engine
    from sluice.store.traces_repo import TracesRepo, span_row
    from sluice.telemetry.export import Exporter

    engine = create_engine(database_url) if database_url else None
    repo = TracesRepo(engine) if engine is not None else None
    exporter = Exporter(cfg, env)
    stored = store_failed = 0

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
            if kind == "spans":
                spans: list[SpanRecord] = payload
                if repo is not None and spans:
                    try:
                        await repo.write([span_row(span) for span in spans])
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
        if engine is not None:
            await engine.dispose()
