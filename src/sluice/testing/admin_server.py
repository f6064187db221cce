"""Run the admin API (uvicorn) on ``admin.host``/``admin.port`` (0: any free port) for tests,
in the test's own loop, as ``GatewayServer`` runs the gateway::

    gw = GatewayServer(config)
    admin = AdminServer(config, counters=gw.budget_counters)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import uvicorn

from sluice.admin.app import create_admin_app
from sluice.admin.state import CircuitsSource, CountersSource
from sluice.base.clock import Clock
from sluice.config.models import SluiceConfig


class AdminServer:
    def __init__(
        self,
        config: SluiceConfig,
        *,
        counters: CountersSource | None = None,
        clock: Clock | None = None,
        circuits: CircuitsSource | None = None,
        gateway_url: Callable[[], str] | None = None,
    ) -> None:
        self.app = create_admin_app(
            config, clock=clock, counters=counters, circuits=circuits, gateway_url=gateway_url
        )
        self._config = config
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        if self._sock is None:
            raise RuntimeError("admin server not started")
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._config.admin.host, self._config.admin.port))
        self._sock = sock
        config = uvicorn.Config(self.app, lifespan="on", access_log=False, log_config=None)
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("admin server failed to start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sock is not None:
            self._sock.close()

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
