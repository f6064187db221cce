"""Run a real Sluice gateway (uvicorn, uvloop, httptools + edge limits) for tests, benchmarks.

``GatewayServer`` has async ``start``/``stop``, so it runs in the test's own loop or, through
``ServerThread``, on a loop of its own for sync tests and subprocess clients (Claude Code)::

    gw = GatewayServer(config)
    with ServerThread.for_fake(gw):
        ... gw.url ...
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn

from sluice.base.clock import Clock
from sluice.config.models import SluiceConfig
from sluice.server.app import SluiceApp
from sluice.server.edge_limits import http_protocol


class GatewayServer:
    def __init__(self, config: SluiceConfig, *, clock: Clock | None = None) -> None:
        self.app = SluiceApp(config, clock=clock)
        self._config = config
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("gateway not started")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # Bind first (port 0 = any free port), then hand the socket to uvicorn: no race.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._config.server.host, self._config.server.port))
        self._sock = sock
        config = uvicorn.Config(
            self.app,
            http=http_protocol(self._config.server),  # the same edge limits as `sluice serve`
            lifespan="on",
            server_header=False,
            access_log=False,
            log_config=None,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise a start-up failure
                raise RuntimeError("gateway failed to start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sock is not None:
            self._sock.close()

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
