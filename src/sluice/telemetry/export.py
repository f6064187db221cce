"""OTLP/HTTP export off the response path: a bounded buffer and one sender per collector.

Spans arrive built, with their own ids and times, and are encoded once (``otlp_wire``). Each
collector (the default one, and each project override) has a lane: a bounded buffer of encoded
spans drained by one task that POSTs ``application/x-protobuf`` batches with aiohttp. A slow or
dead collector fills its lane and the excess is dropped and counted; it never holds a request
or grows memory. Without a configured endpoint the standard ``OTEL_EXPORTER_OTLP_*`` variables
apply (endpoint, headers, timeout), as in the OpenTelemetry SDK.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp

from sluice.config.models import TracingConfig
from sluice.telemetry.otlp_wire import SpanEncoder, parse_headers, resource_attributes
from sluice.telemetry.spans import SpanRecord

log = logging.getLogger("sluice.telemetry")

SCOPE = ("sluice.gateway", "0.1.0")
_RETRYABLE = frozenset({429, 502, 503, 504})


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


class _Lane:
    """One collector: a bounded buffer of encoded spans and the task that sends it."""

    def __init__(self, target: Target, limit: int, batch: int) -> None:
        self.target = target
        self.buffer: deque[bytes] = deque()
        self.limit = limit
        self.batch = batch
        self.wake = asyncio.Event()
        self.busy = False
        self.failures = 0  # failed exports, for logging the first and every 100th
        self.task: asyncio.Task[None] | None = None

    def offer(self, spans: Iterable[bytes]) -> int:
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
        self._cfg = cfg
        environ = os.environ if env is None else env
        self._default = default_target(cfg, environ)
        self._resource = resource_attributes(environ)
        self._encoder = SpanEncoder()
        self._lanes: dict[str, _Lane] = {}
        self._session: aiohttp.ClientSession | None = None
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
        """Encode sampled spans and route them to their project's collector (or the default)."""
        by_lane: dict[str, list[bytes]] = {}
        for span in spans:
            if not sampled(span.trace_id, self._cfg.sample_ratio):
                continue
            lane = span.project if span.project in self._cfg.projects else ""
            if lane == "" and self._default is None:
                continue
            by_lane.setdefault(lane or "", []).append(self._encoder.span(span))
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
            lane = _Lane(target, cfg.export_queue_size, cfg.export_batch_size)
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
                sent = await self._post(lane.target, batch, quiet=lane.failures % 100 != 0)
            finally:
                lane.busy = False
            if sent:
                self.exported += len(batch)
            else:
                self.failed += len(batch)
                lane.failures += 1

    async def _post(self, target: Target, batch: list[bytes], *, quiet: bool) -> bool:
        """One export; one retry for a retryable answer. Never raises; logs unless quiet."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = self._encoder.request(batch, self._resource, SCOPE)
        headers = {**target.headers, "Content-Type": "application/x-protobuf"}
        timeout = aiohttp.ClientTimeout(total=target.timeout_s)
        for attempt in range(2):
            try:
                async with self._session.post(
                    target.endpoint, data=body, headers=headers, timeout=timeout
                ) as resp:
                    await resp.read()
                    if resp.status < 300:
                        return True
                    if resp.status not in _RETRYABLE or attempt:
                        if not quiet:
                            log.warning("OTLP export to %s: HTTP %d", target.endpoint, resp.status)
                        return False
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt:
                    if not quiet:
                        log.warning("OTLP export to %s failed: %r", target.endpoint, exc)
                    return False
            await asyncio.sleep(0.5)
        return False

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
        if self._session is not None:
            await self._session.close()
