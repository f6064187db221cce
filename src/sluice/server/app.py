"""The ASGI app: lifespan plus a small path router over plain handlers.

The hot path is raw ASGI on purpose (reference/stack-measurements.md): a framework's
streaming response costs a third of the relay's throughput.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

from sluice import __version__
from sluice.base.asgi import Receive, Scope, Send, send_error, send_json
from sluice.base.clock import Clock, SystemClock, new_request_id
from sluice.base.heap import freeze_startup_heap
from sluice.config.loader import load_config
from sluice.config.models import SluiceConfig
from sluice.errors import NotFound
from sluice.logs import configure_logging
from sluice.server.bedrock_listings import LISTINGS, handle_bedrock_listing
from sluice.server.door_routes import match_door
from sluice.server.models_route import handle_models
from sluice.server.proxy_route import handle_proxy
from sluice.server.services import Services, build_services

log = logging.getLogger("sluice")


class SluiceApp:
    def __init__(self, config: SluiceConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._services: Services | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def services(self) -> Services:
        """Built at start-up (lifespan); requests only arrive after it."""
        assert self._services is not None, "the app has not started"
        return self._services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._services = await build_services(self.config, self.clock, self._stack)
                except Exception as exc:
                    log.exception("start-up failed")
                    await self._stack.aclose()
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                freeze_startup_heap()  # see base/heap.py
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        services = self.services
        if method == "POST":
            if path == "/v1/messages":
                await handle_proxy(services, scope, receive, send, "messages")
                return
            if path == "/v1/messages/count_tokens":
                await handle_proxy(services, scope, receive, send, "count_tokens")
                return
            door = match_door(path)
            if door is not None:
                await handle_proxy(services, scope, receive, send, door.endpoint, door)
                return
        elif method in ("GET", "HEAD"):
            if path == "/v1/models" or path.startswith("/v1/models/"):
                await handle_models(services, scope, receive, send)
                return
            if path in LISTINGS:
                await handle_bedrock_listing(services, scope, receive, send)
                return
            if path == "/" or path == "/api/hello":
                # Claude Code's probes, answered at once with no auth: HEAD / (its warm-up),
                # HEAD /api/hello (warm-up with nonessential traffic on), GET /api/hello
                # (`claude doctor`'s "API (custom host)" check).
                await send_json(send, 200, {"name": "sluice", "status": "ok"}, new_request_id())
                return
            if path == "/healthz":
                await send_json(send, 200, self._health(), new_request_id())
                return
            if path == "/readyz":
                db = await services.db_ready()
                redis = await services.redis_ready()
                degraded = services.degraded(redis)
                # Redis down is degraded, not unready: every replica shares it, and each
                # feature's configured outage outcome is the answer (redis_outage:).
                body: dict[str, Any] = {
                    "status": "unavailable" if not db else "degraded" if degraded else "ok",
                    "database": db,
                    "redis": redis,
                    "degraded": degraded,
                    # Informational: an open circuit is the upstream's trouble, not this
                    # replica's, so it does not make the replica unready.
                    "providers": services.circuits(),
                }
                await send_json(send, 200 if db else 503, body, new_request_id())
                return
        await send_error(
            send,
            NotFound(f"No route for {method} {path}.", tips=["Sluice serves /v1/messages."]),
            new_request_id(),
        )

    def _health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - self.services.started_at, 3),
            "demo": self.services.demo,
        }


def create_app() -> SluiceApp:
    """Factory for ``uvicorn --factory`` (multi-worker serve): config from ``SLUICE_CONFIG``."""
    config = load_config(os.environ.get("SLUICE_CONFIG") or None)
    configure_logging(config.server.log_level)  # a worker process starts with no handlers
    return SluiceApp(config)
