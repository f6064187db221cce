"""Telemetry: the request path's one hook, and the worker that turns requests into spans.

``record`` runs at the end of every request and only appends a small ``Finished`` to a bounded
queue (by count and by the bytes of history it keeps alive); when full it drops and counts. A
background task drains the queue every ``flush_interval_ms``: it detects turns, builds spans,
and hands the spans to the sink process (``telemetry.sink``), which writes the local store and
exports them. Nothing here can slow a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.config.models import TracingConfig
from sluice.core.context import RequestContext
from sluice.store.traces_repo import TracesRepo
from sluice.telemetry.sink import SpanSink
from sluice.telemetry.spans import (
    Finished,
    SpanRecord,
    chat_span,
    root_span,
    tool_call_starts,
    tool_spans,
)
from sluice.telemetry.turns import agent_name, detect_turn, parse_traceparent, session_of

log = logging.getLogger("sluice.telemetry")

_TOOL_STARTS_KEPT = 10_000  # tool_use ids remembered for the next request's tool span
_PRUNE_EVERY_S = 3600.0
_HEADERS = (
    b"user-agent",
    b"x-langwatch-agent",
    b"traceparent",
    b"x-session-affinity",
    b"session-id",
)


class Telemetry:
    def __init__(
        self,
        cfg: TracingConfig,
        engine: AsyncEngine | None,
        *,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.enabled = cfg.enabled
        # Reads (tool start times, pruning) here; span writes happen in the sink process.
        self._repo = TracesRepo(engine) if engine is not None and cfg.store else None
        self._sink = SpanSink(cfg, database_url, os.environ if env is None else env)
        self._queue: deque[Finished] = deque()
        self._queued_bytes = 0
        self._tool_starts: OrderedDict[str, int] = OrderedDict()
        self._tool_unknown: OrderedDict[str, int] = OrderedDict()  # looked up, not found
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one batch at a time: flush() waits for one in flight
        self._last_prune = 0.0
        self.recorded = 0
        self.dropped = 0

    # -- the request path ---------------------------------------------------------------

    def record(self, ctx: RequestContext, row: Mapping[str, Any]) -> None:
        """Queue a finished request (identified key, Messages endpoint) for tracing.

        The turn is detected here (tens of µs, after the response is complete), so the record
        keeps no reference to the request body: holding thousands of 100 KB bodies until the
        worker runs cost more CPU (cache misses, allocator churn) than the detection itself.
        """
        if not self.enabled or ctx.key is None or ctx.messages_raw is None:
            return
        if ctx.endpoint != "messages":
            return
        if len(self._queue) >= self.cfg.queue_size:
            self._drop()
            return
        headers: dict[bytes, bytes] = {}
        for name, value in ctx.headers:
            lowered = name.lower()
            if lowered in _HEADERS:
                headers.setdefault(lowered, value)
        session = session_of(ctx.session_id, headers)
        try:
            caller = parse_traceparent(headers.get(b"traceparent"))
            turn = detect_turn(ctx.messages_raw, session, ctx.request_id, caller)
        except Exception:  # a body the upstream accepted but turns cannot read: no trace
            log.debug("no turn for %s", ctx.request_id, exc_info=True)
            return
        capture = self.cfg.capture_content and ctx.key.config.capture_content is not False
        finished = Finished.of(ctx, row, turn, session, agent_name(headers), capture)
        size = finished.size
        if self._queued_bytes + size > self.cfg.queue_bytes:
            self._drop()
            return
        self._queue.append(finished)
        self._queued_bytes += size
        self.recorded += 1

    def _drop(self) -> None:
        self.dropped += 1
        if self.dropped % 1000 == 1:
            log.warning("trace queue full; %d requests dropped from tracing", self.dropped)

    # -- counters for metrics ----------------------------------------------------------

    def stats(self) -> dict[str, int]:
        sink = self._sink
        dropped_spans = sink.dropped + sink.child["export_dropped"]
        return {
            "recorded": self.recorded,
            "queue_depth": len(self._queue) + sink.queue_depth,
            "dropped": self.dropped + dropped_spans,
            "dropped_requests": self.dropped,
            "dropped_spans": dropped_spans,
            "export_queue_depth": sink.queue_depth,
            "exported": sink.child["exported"],
            "export_failed": sink.child["export_failed"],
            "stored": sink.child["stored"],
            "store_failed": sink.child["store_failed"],
        }

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._sink.start()

    async def stop(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.process()
        if self.enabled:
            await self._sink.stop()

    async def flush(self, wait_s: float = 10.0) -> None:
        """Turn everything queued into spans and wait for the exporter (tests, shutdown)."""
        await self.process()
        await self._sink.idle(wait_s)

    async def _run(self) -> None:
        interval = self.cfg.flush_interval_ms / 1000
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            try:
                await self.process()
                await self._maybe_prune()
            except Exception:
                log.exception("trace worker failed a batch")

    # -- the worker -----------------------------------------------------------------------

    async def process(self) -> None:
        """Drain the queue once: spans for each request, one store write, export."""
        async with self._lock:
            await self._process()

    async def _process(self) -> None:
        batch: list[Finished] = []
        while self._queue:
            finished = self._queue.popleft()
            self._queued_bytes -= finished.size
            batch.append(finished)
        if not batch:
            return
        spans: list[SpanRecord] = []
        for finished in batch:
            try:
                spans.extend(await self._spans(finished))
            except Exception:
                log.exception("could not build spans for %s", finished.request_id)
        self._sink.submit(spans)

    async def _spans(self, rec: Finished) -> list[SpanRecord]:
        turn, session, agent = rec.turn, rec.session, rec.agent
        capture = rec.messages_raw is not None
        starts = tool_call_starts(rec)
        for tool_use_id, at in starts.items():
            self._remember(self._tool_starts, tool_use_id, at)
        known = {r.tool_use_id: self._tool_starts.get(r.tool_use_id) for r in turn.tool_results}
        if self._repo is not None:
            for result in turn.tool_results:
                tool_use_id = result.tool_use_id
                if (
                    known[tool_use_id] is None
                    and result.asked_at_messages is not None
                    and tool_use_id not in self._tool_unknown
                ):
                    known[tool_use_id] = await self._repo.tool_start(
                        f"{turn.trace_id:032x}",
                        f"{turn.chat_span_for(result.asked_at_messages):016x}",
                        tool_use_id,
                    )
                    if known[tool_use_id] is None:
                        # Asked once: a retried request must not cost a query each time.
                        self._remember(self._tool_unknown, tool_use_id, 0)
        found = {k: v for k, v in known.items() if v is not None}
        spans = [chat_span(rec, turn, session, agent, capture)]
        if turn.opens:
            spans.insert(0, root_span(rec, turn, session, agent))
        spans.extend(tool_spans(rec, turn, session, agent, capture, found))
        return spans

    @staticmethod
    def _remember(table: OrderedDict[str, int], tool_use_id: str, at: int) -> None:
        table[tool_use_id] = at
        table.move_to_end(tool_use_id)
        while len(table) > _TOOL_STARTS_KEPT:
            table.popitem(last=False)

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if self._repo is None or now - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = now
        await self.prune()

    async def prune(self) -> int:
        """Delete stored spans older than ``retention_days``; return how many."""
        if self._repo is None:
            return 0
        cutoff = int(time.time() * 1000 - self.cfg.retention_days * 86_400_000)
        removed = await self._repo.prune(cutoff)
        if removed:
            log.info(
                "trace store: pruned %d spans older than %s days", removed, self.cfg.retention_days
            )
        return removed
