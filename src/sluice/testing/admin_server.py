"""Run the admin API (uvicorn) on ``admin.host``/``admin.port`` (0: any free port) for tests,
in the test's own loop, as ``GatewayServer`` runs the gateway::

    gw = GatewayServer(config)
    admin = AdminServer(config, counters=gw.budget_counters)
"""

from __future__ import annotations

from collections.abc import Callable

import uvicorn

from sluice.admin.app import create_admin_app
from sluice.admin.state import CircuitsSource, CountersSource
from sluice.base.clock import Clock
from sluice.config.models import SluiceConfig
from sluice.testing.served import Served


class AdminServer(Served):
    def __init__(
        self,
        config: SluiceConfig,
        *,
        counters: CountersSource | None = None,
        clock: Clock | None = None,
        circuits: CircuitsSource | None = None,
        gateway_url: Callable[[], str] | None = None,
    ) -> None:
        super().__init__()
        self.app = create_admin_app(
            config, clock=clock, counters=counters, circuits=circuits, gateway_url=gateway_url
        )
        self._config = config

    async def start(self) -> None:
        config = uvicorn.Config(self.app, lifespan="on", access_log=False, log_config=None)
        await self._serve(self._config.admin.host, self._config.admin.port, config)
