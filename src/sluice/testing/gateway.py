"""Run a real Sluice gateway (uvicorn, uvloop, httptools + edge limits) for tests, benchmarks.

``GatewayServer`` has async ``start``/``stop``, so it runs in the test's own loop or, through
``ServerThread``, on a loop of its own for sync tests and subprocess clients (Claude Code)::

    gw = GatewayServer(config)
    with ServerThread.for_fake(gw):
        ... gw.url ...
"""

from __future__ import annotations

import uvicorn

from sluice.base.clock import Clock
from sluice.config.models import SluiceConfig
from sluice.server.app import SluiceApp
from sluice.server.edge_limits import http_protocol
from sluice.testing.served import Served


class GatewayServer(Served):
    def __init__(self, config: SluiceConfig, *, clock: Clock | None = None) -> None:
        super().__init__()
        self.app = SluiceApp(config, clock=clock)
        self._config = config

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            http=http_protocol(self._config.server),  # the same edge limits as `sluice serve`
            lifespan="on",
            server_header=False,
            access_log=False,
            proxy_headers=False,  # as `sluice serve`: nothing reads the client address
            log_config=None,
        )
        await self._serve(self._config.server.host, self._config.server.port, config)
