"""An ASGI app served by uvicorn on a socket bound first (port 0: any free port), in the
caller's loop: the shared half of ``GatewayServer`` and ``AdminServer``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Self

import uvicorn


class Served:
    def __init__(self) -> None:
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, host: str, port: int, config: uvicorn.Config) -> None:
        # Bind first, then hand the socket to uvicorn: no race for the port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self._sock = sock
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise a start-up failure
                raise RuntimeError(f"{type(self).__name__} failed to start")
            await asyncio.sleep(0.01)

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sock is not None:
            self._sock.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
