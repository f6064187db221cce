"""OTLP/HTTP export off the response path: a bounded buffer and one sender per collector.

Spans arrive here already built, with their own ids and times, so they go straight to the SDK's
``OTLPSpanExporter`` as ``ReadableSpan``s (no tracer, no id generator, no context). Each
collector (the default one and each project override) has a lane: a bounded buffer drained by
one task that calls the blocking exporter in a worker thread. A slow or dead collector fills its
lane and the excess is dropped and counted; it never holds a request or grows memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from sluice.config.models import TracingConfig
from sluice.telemetry.spans import SpanRecord

log = logging.getLogger("sluice.telemetry")

_KINDS = {"client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}
_SCOPE = InstrumentationScope("sluice.gateway", "0.1.0")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_ENV_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

ExporterFactory = Callable[[str | None, dict[str, str] | None, float], SpanExporter]


def sampled(trace_id: int, ratio: float) -> bool:
    """Deterministic by trace id (its low 64 bits, as the SDK's ratio sampler does), so every
    replica keeps or drops the same whole turn."""
    if ratio >= 1.0:
        return True
    return (trace_id & 0xFFFF_FFFF_FFFF_FFFF) < int(ratio * 2**64)


def to_readable(span: SpanRecord, resource: Resource) -> ReadableSpan:
    context = SpanContext(span.trace_id, span.span_id, is_remote=False, trace_flags=_SAMPLED)
    parent = (
        SpanContext(span.trace_id, span.parent_id, is_remote=True, trace_flags=_SAMPLED)
        if span.parent_id is not None
        else None
    )
    status = Status(StatusCode.ERROR, span.error) if span.error else Status(StatusCode.UNSET)
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=span.attributes,
        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
        status=status,
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=_SCOPE,
    )


def _otlp(endpoint: str | None, headers: dict[str, str] | None, timeout: float) -> SpanExporter:
    # endpoint/headers None: the SDK reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT/HEADERS itself.
    return OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=timeout)


class _Lane:
    """One collector: a bounded buffer and the task that sends it in batches."""

    def __init__(self, exporter: SpanExporter, limit: int, batch: int) -> None:
        self.exporter = exporter
        self.buffer: deque[ReadableSpan] = deque()
        self.limit = limit
        self.batch = batch
        self.wake = asyncio.Event()
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    def offer(self, spans: Iterable[ReadableSpan]) -> int:
        """Queue what fits; return how many were dropped."""
        dropped = 0
        for span in spans:
            if len(self.buffer) >= self.limit:
                dropped += 1
            else:
                self.buffer.append(span)
        self.wake.set()
        return dropped


class Exporter:
    def __init__(self, cfg: TracingConfig, factory: ExporterFactory | None = None) -> None:
        self._cfg = cfg
        self._factory = factory or _otlp
        self._resource = Resource.create({"service.name": "sluice"})
        self._lanes: dict[str, _Lane] = {}
        self._closing = False
        self.exported = 0
        self.dropped = 0
        self.failed = 0
        self.default_enabled = cfg.otlp_endpoint is not None or any(
            os.environ.get(name) for name in _ENV_ENDPOINTS
        )

    @property
    def queue_depth(self) -> int:
        return sum(len(lane.buffer) for lane in self._lanes.values())

    def submit(self, spans: list[SpanRecord]) -> None:
        """Route sampled spans to their project's collector (or the default one)."""
        by_lane: dict[str, list[ReadableSpan]] = {}
        for span in spans:
            if not sampled(span.trace_id, self._cfg.sample_ratio):
                continue
            lane = span.project if span.project in self._cfg.projects else ""
            if lane == "" and not self.default_enabled:
                continue
            by_lane.setdefault(lane or "", []).append(to_readable(span, self._resource))
        for name, readable in by_lane.items():
            self.dropped += self._lane(name).offer(readable)

    def _lane(self, name: str) -> _Lane:
        lane = self._lanes.get(name)
        if lane is None:
            cfg = self._cfg
            if name:
                project = cfg.projects[name]
                endpoint: str | None = project.otlp_endpoint
                secrets = project.headers
            else:
                endpoint, secrets = cfg.otlp_endpoint, cfg.headers
            headers = {k: v.get_secret_value() for k, v in secrets.items()} or None
            exporter = self._factory(endpoint, headers, cfg.export_timeout_s)
            lane = _Lane(exporter, cfg.export_queue_size, cfg.export_batch_size)
            lane.task = asyncio.get_running_loop().create_task(self._drain(lane))
            self._lanes[name] = lane
        return lane

    async def _drain(self, lane: _Lane) -> None:
        while True:
            if not lane.buffer:
                if self._closing:
                    return
                await lane.wake.wait()
                lane.wake.clear()
                continue
            batch = [lane.buffer.popleft() for _ in range(min(lane.batch, len(lane.buffer)))]
            lane.busy = True
            try:
                result = await asyncio.to_thread(lane.exporter.export, batch)
            except Exception:
                log.exception("span export raised")
                result = SpanExportResult.FAILURE
            finally:
                lane.busy = False
            if result is SpanExportResult.SUCCESS:
                self.exported += len(batch)
            else:
                self.failed += len(batch)

    async def idle(self, wait_s: float) -> bool:
        """Wait until every lane has sent what it holds (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while any(lane.buffer or lane.busy for lane in self._lanes.values()):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def stop(self, wait_s: float = 5.0) -> None:
        """Send what is queued within ``wait_s``; what is left then is dropped and counted."""
        await self.idle(wait_s)
        self._closing = True
        for lane in self._lanes.values():
            self.dropped += len(lane.buffer)
            lane.buffer.clear()
            lane.wake.set()
        tasks: list[Any] = [lane.task for lane in self._lanes.values() if lane.task]
        _done, pending = await asyncio.wait(tasks, timeout=1.0) if tasks else (set(), set())
        for task in pending:
            task.cancel()  # an export stuck in its thread; its thread ends on its own timeout
        for lane in self._lanes.values():
            lane.exporter.shutdown()
