"""Serve ``/metrics`` on its own port (a small aiohttp server on the gateway's event loop).

Rendering the registry runs in a thread of its own, never on the event loop: a render is
pure CPU for as long as the registry is big, and on the loop every request would wait for
it. One thread, so scrapes queue rather than pile up threads.

Several worker processes (``server.workers > 1``) cannot share one port: worker ``i`` binds
the first free port of ``port .. port + workers - 1``, so each worker has its own endpoint and
Prometheus scrapes them all and sums. A port that cannot be bound never stops the gateway:
it logs an error and serves traffic without the endpoint.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sluice.config.models import MetricsConfig
from sluice.telemetry.metrics import Metrics

log = logging.getLogger("sluice.metrics")

WORKERS_ENV = "SLUICE_WORKERS"  # set by `sluice serve --workers N` for its worker processes


def worker_span(configured_workers: int) -> int:
    """How many consecutive ports the workers of this server may use."""
    try:
        return max(1, int(os.environ.get(WORKERS_ENV, configured_workers)))
    except ValueError:
        return max(1, configured_workers)


def _bind_first_free(host: str, port: int, span: int) -> socket.socket | None:
    candidates = [0] if port == 0 else range(port, min(port + span, 65536))
    for candidate in candidates:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.bind((host, candidate))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        sock.setblocking(False)
        return sock
    return None


class MetricsServer:
    def __init__(self, metrics: Metrics, config: MetricsConfig, workers: int) -> None:
        self._metrics = metrics
        self._config = config
        self._span = worker_span(workers)
        self._runner: web.AppRunner | None = None
        self._render: ThreadPoolExecutor | None = None
        self.port: int | None = None  # the bound port, once started (None: not served)

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        return f"http://{self._config.host}:{self.port}/metrics"

    async def start(self) -> None:
        cfg = self._config
        try:
            sock = _bind_first_free(cfg.host, cfg.port, self._span)
        except OSError as exc:
            log.error("metrics endpoint not served: cannot bind %s:%d: %s", cfg.host, cfg.port, exc)
            return
        if sock is None:
            last = cfg.port + self._span - 1
            log.error(
                "metrics endpoint not served: ports %d..%d on %s are all in use",
                cfg.port,
                last,
                cfg.host,
            )
            return
        self._render = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-metrics")
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        self.port = int(sock.getsockname()[1])
        log.info("metrics served at %s", self.url, extra={"metrics_port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._render is not None:
            self._render.shutdown(wait=False, cancel_futures=True)
            self._render = None

    async def _scrape(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(self._render, generate_latest, self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_banner(config: MetricsConfig, workers: int) -> str:
    """What ``sluice serve`` prints about the metrics endpoint."""
    if not config.enabled:
        return "Metrics: disabled (metrics.enabled: false)"
    if config.port == 0:
        return f"Metrics on http://{config.host}:<any free port>/metrics (see the log line)"
    if workers > 1:
        last = config.port + workers - 1
        return (
            f"Metrics on http://{config.host}:{config.port}..{last}/metrics "
            "(one port per worker; scrape all and sum)"
        )
    return f"Metrics on http://{config.host}:{config.port}/metrics"
