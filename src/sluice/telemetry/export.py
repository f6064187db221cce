"""OTLP/HTTP export off the response path: a bounded buffer and one sender per collector.

Spans arrive built, with their own ids and times. Each collector (the default one, and each
project override) has a lane: a bounded buffer drained by one task that hands batches to an
OTLP exporter in a worker thread, so neither encoding nor a slow collector ever runs on the
event loop. A slow or dead collector fills its lane and the excess is dropped and counted; it
never holds a request or grows memory.

Two exporters, chosen by ``tracing.exporter``:

- ``sdk`` (default): the OpenTelemetry SDK's ``OTLPSpanExporter`` (protobuf encoding in Python,
  HTTP, retries with backoff), the reference implementation.
- ``fastotel`` (the ``fastotel`` extra): fastotel's ``OTLPSpanProcessor`` copies each span into
  Rust, where it is encoded, sent and retried on a native thread without the GIL. It sends what
  the SDK's exporter sends for the same spans for about half the sink process's CPU
  (BENCHMARKS.md); it is pre-1.0, hence not the default.

The SDK's own ``BatchSpanProcessor`` is not used for the buffering because it logs a warning
for every dropped span and exposes no drop count. Without a configured endpoint the standard
``OTEL_EXPORTER_OTLP_*`` variables apply (endpoint, headers, timeout), and
``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` shape the resource, as in the SDK.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.re import parse_env_headers

from sluice.config.models import TracingConfig
from sluice.telemetry.spans import SpanRecord

log = logging.getLogger("sluice.telemetry")

SCOPE = InstrumentationScope("sluice.gateway", "0.1.0")
_KINDS = {"client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL, "server": SpanKind.SERVER}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NO_STATE = TraceState()
_UNSET = Status(StatusCode.UNSET)


def parse_headers(text: str | None) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: ``k1=v1,k2=v2``, values URL-encoded (the SDK's parser)."""
    return dict(parse_env_headers(text or "", liberal=True))


def resource(env: Mapping[str, str]) -> Resource:
    """The SDK's resource, with ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` read from
    ``env`` (injectable); service name ``sluice`` unless they name one."""
    attrs: dict[str, str] = {"service.name": "sluice"}
    attrs.update(parse_headers(env.get("OTEL_RESOURCE_ATTRIBUTES")))
    if env.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = env["OTEL_SERVICE_NAME"]
    return Resource.create(attrs)


def _kind(span: SpanRecord) -> SpanKind:
    return _KINDS.get(span.kind, SpanKind.INTERNAL)


def _status(span: SpanRecord) -> Status:
    return Status(StatusCode.ERROR, span.error) if span.error else _UNSET


def readable(span: SpanRecord, res: Resource) -> ReadableSpan:
    context = SpanContext(span.trace_id, span.span_id, is_remote=False, trace_flags=_SAMPLED)
    parent = (
        SpanContext(span.trace_id, span.parent_id, is_remote=False, trace_flags=_SAMPLED)
        if span.parent_id is not None
        else None
    )
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=res,
        attributes=span.attributes,
        kind=_kind(span),
        status=_status(span),
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=SCOPE,
    )


class _Ids:
    """What fastotel reads of a ``SpanContext`` (its span and its parent's): built with no
    validation, where ``SpanContext.__new__`` checks every id on each span."""

    __slots__ = ("is_remote", "span_id", "trace_flags", "trace_id", "trace_state")

    def __init__(self, trace_id: int, span_id: int) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.is_remote = False
        self.trace_flags = _SAMPLED
        self.trace_state = _NO_STATE


class _HandOver:
    """A span as fastotel's native ``on_end`` reads it (the ``ReadableSpan`` attributes it
    takes, checked against the SDK exporter's output in tests/integration/test_otlp_export.py).
    Plain slots: a ``ReadableSpan`` costs ~6 µs to build and its properties slow the native
    copy; this costs about half of both (BENCHMARKS.md, session 11)."""

    __slots__ = (
        "attributes",
        "context",
        "end_time",
        "instrumentation_scope",
        "kind",
        "name",
        "parent",
        "resource",
        "start_time",
        "status",
    )
    events = links = ()
    dropped_attributes = dropped_events = dropped_links = 0

    def __init__(self, span: SpanRecord, res: Resource) -> None:
        self.name = span.name
        self.context = _Ids(span.trace_id, span.span_id)
        self.parent = None if span.parent_id is None else _Ids(span.trace_id, span.parent_id)
        self.kind = _kind(span)
        self.status = _status(span)
        self.resource = res
        self.instrumentation_scope = SCOPE
        self.start_time = span.start_ns
        self.end_time = span.end_ns
        self.attributes = span.attributes


def sampled(trace_id: int, ratio: float) -> bool:
    """Deterministic by trace id (its low 64 bits, as the SDK's ratio sampler does), so every
    replica keeps or drops the same whole turn."""
    if ratio >= 1.0:
        return True
    return (trace_id & 0xFFFF_FFFF_FFFF_FFFF) < int(ratio * 2**64)


@dataclass(frozen=True)
class Target:
    endpoint: str
    headers: dict[str, str]
    timeout_s: float


def default_target(cfg: TracingConfig, env: Mapping[str, str]) -> Target | None:
    """The configured endpoint, else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is), else
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``; None when none is set (store only)."""
    headers = parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS"))
    headers.update(parse_headers(env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")))
    headers.update({k: v.get_secret_value() for k, v in cfg.headers.items()})
    timeout_ms = env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get(
        "OTEL_EXPORTER_OTLP_TIMEOUT"
    )
    timeout = cfg.export_timeout_s
    if timeout_ms and "export_timeout_s" not in cfg.model_fields_set:
        try:
            timeout = float(timeout_ms) / 1000
        except ValueError:
            log.warning("ignoring OTEL_EXPORTER_OTLP_TIMEOUT=%r (not a number)", timeout_ms)
    endpoint = cfg.otlp_endpoint or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return Target(endpoint, headers, timeout) if endpoint else None


class _SdkSender:
    """The OpenTelemetry SDK's exporter: encodes in Python, in the calling (worker) thread."""

    def __init__(self, target: Target) -> None:
        self._exporter = OTLPSpanExporter(
            endpoint=target.endpoint, headers=target.headers, timeout=target.timeout_s
        )

    def send(self, spans: list[SpanRecord], res: Resource) -> int:
        """Export a batch; return how many spans failed."""
        ok = self._exporter.export([readable(s, res) for s in spans]) is SpanExportResult.SUCCESS
        return 0 if ok else len(spans)

    def shutdown(self) -> None:
        self._exporter.shutdown()  # type: ignore[no-untyped-call]


class _FastotelSender:
    """fastotel's processor, fed one batch at a time and flushed, so that what this lane
    holds, and how each batch ended, stay known here: the processor's own queue never holds
    more than the batch in flight (so it never drops), and its failure counters (public in
    fastotel's native half only, hence the pinned version) say how much of the batch failed."""

    def __init__(self, target: Target, batch: int) -> None:
        from fastotel import OTLPSpanProcessor  # imported here: the gateway never loads it

        self._timeout_s = target.timeout_s
        self._processor = OTLPSpanProcessor(
            endpoint=target.endpoint,
            headers=target.headers,
            timeout=target.timeout_s,
            max_queue_size=batch,
            max_export_batch_size=batch,
            schedule_delay_millis=60_000.0,  # batches leave on our flush, not on a timer
            export_timeout_millis=target.timeout_s * 1000,
        )
        self._native: Any = self._processor._native  # the counters (see above)

    def _lost(self) -> int:
        native = self._native
        return int(native.failed_spans() + native.rejected_spans() + native.dropped_spans())

    def send(self, spans: list[SpanRecord], res: Resource) -> int:
        before = self._lost()
        on_end = self._processor.on_end
        for span in spans:
            on_end(_HandOver(span, res))  # type: ignore[arg-type]  # duck-typed, see _HandOver
        # Waits without the GIL; the export itself gives up within the timeout, retries
        # included, so the margin only covers a stalled worker thread.
        if not self._processor.force_flush(self._timeout_s * 1000 + 5000):
            return len(spans)
        return min(len(spans), self._lost() - before)

    def shutdown(self) -> None:
        self._processor.shutdown()


def _sender(kind: str, target: Target, batch: int) -> _SdkSender | _FastotelSender:
    return _FastotelSender(target, batch) if kind == "fastotel" else _SdkSender(target)


class _Lane:
    """One collector: a bounded buffer of spans, its sender, and the task that feeds it."""

    def __init__(self, target: Target, limit: int, batch: int, kind: str) -> None:
        self.target = target
        self.sender = _sender(kind, target, batch)
        self.buffer: deque[SpanRecord] = deque()
        self.limit = limit
        self.batch = batch
        self.wake = asyncio.Event()
        self.busy = False
        self.failures = 0  # failed exports, for logging the first and every 100th
        self.task: asyncio.Task[None] | None = None

    def offer(self, spans: Iterable[SpanRecord]) -> int:
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
    def __init__(self, cfg: TracingConfig, env: Mapping[str, str] | None = None) -> None:
        # The SDK exporter logs every failed attempt; the lanes log failures, rate-limited.
        logging.getLogger("opentelemetry.exporter.otlp.proto.http").setLevel(logging.ERROR)
        self._cfg = cfg
        environ = os.environ if env is None else env
        self._default = default_target(cfg, environ)
        self._resource = resource(environ)
        self._lanes: dict[str, _Lane] = {}
        self._closing = False
        self.exported = 0
        self.dropped = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self._default is not None or bool(self._cfg.projects)

    @property
    def queue_depth(self) -> int:
        return sum(len(lane.buffer) for lane in self._lanes.values())

    def submit(self, spans: list[SpanRecord]) -> None:
        """Route sampled spans to their project's collector (or the default)."""
        by_lane: dict[str, list[SpanRecord]] = {}
        for span in spans:
            if not sampled(span.trace_id, self._cfg.sample_ratio):
                continue
            lane = span.project if span.project in self._cfg.projects else ""
            if lane == "" and self._default is None:
                continue
            by_lane.setdefault(lane or "", []).append(span)
        for name, encoded in by_lane.items():
            self.dropped += self._lane(name).offer(encoded)

    def _lane(self, name: str) -> _Lane:
        lane = self._lanes.get(name)
        if lane is None:
            cfg = self._cfg
            if name:
                project = cfg.projects[name]
                headers = {k: v.get_secret_value() for k, v in project.headers.items()}
                target = Target(project.otlp_endpoint, headers, cfg.export_timeout_s)
            else:
                assert self._default is not None
                target = self._default
            lane = _Lane(target, cfg.export_queue_size, cfg.export_batch_size, cfg.exporter)
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
                failed = await asyncio.to_thread(self._export, lane, batch)
            finally:
                lane.busy = False
            self.exported += len(batch) - failed
            if failed:
                self.failed += failed
                lane.failures += 1

    def _export(self, lane: _Lane, batch: list[SpanRecord]) -> int:
        """In a worker thread: encode and send (a retryable answer is retried with backoff
        within the export timeout); return how many spans failed. Never raises; logs the
        first failure and every 100th after it."""
        try:
            failed = lane.sender.send(batch, self._resource)
        except Exception:
            failed = len(batch)
        if failed and lane.failures % 100 == 0:
            log.warning("OTLP export of %d spans to %s failed", failed, lane.target.endpoint)
        return failed

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
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in pending:
                task.cancel()  # an export still waiting on a dead collector
            await asyncio.gather(*pending, return_exceptions=True)
        for lane in self._lanes.values():
            await asyncio.to_thread(lane.sender.shutdown)
