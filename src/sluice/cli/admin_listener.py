"""The admin API's listener under ``sluice serve``.

One worker: the admin server runs on the gateway's own event loop (its ``_serve`` beside the
gateway's; the gateway's signal handling stops both) and reads in-flight budget reservations
from the gateway's counters. ``--workers N``: it runs in the supervising parent, on a thread
with a loop of its own (reserved amounts then show null; spend comes from the ledger).
A busy admin port is a warning, not a failure: replicas on one host share a config.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import uvicorn

from sluice.admin.app import create_admin_app
from sluice.admin.console.signin_link import issue_if_first_start
from sluice.admin.state import CircuitsSource, CountersSource
from sluice.base.clock import SystemClock
from sluice.cli.common import warn
from sluice.cli.startup import AnnouncingServer
from sluice.config.models import SluiceConfig
from sluice.store.db import create_engine
from sluice.store.settings_repo import resolve_secret


def bind_admin(cfg: SluiceConfig) -> socket.socket | None:
    """The admin socket, bound now (so uvicorn can never fail to bind it later), or None."""
    if not cfg.admin.enabled:
        return None
    family = socket.AF_INET6 if ":" in cfg.admin.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.admin.host, cfg.admin.port))
    except OSError as exc:
        sock.close()
        warn(
            f"the admin API cannot listen on {cfg.admin.host}:{cfg.admin.port} "
            f"({exc.strerror}); running without it (change admin.port)"
        )
        return None
    return sock


def admin_server(
    cfg: SluiceConfig,
    counters: CountersSource | None,
    circuits: CircuitsSource | None = None,
) -> uvicorn.Server:
    app = create_admin_app(cfg, counters=counters, circuits=circuits)
    options = uvicorn.Config(
        app, lifespan="on", access_log=False, log_config=None, server_header=False
    )
    return uvicorn.Server(options)


def admin_line(sock: socket.socket, signin_link: str | None = None) -> str:
    host, port = sock.getsockname()[:2]
    base = f"http://{host}:{port}"
    lines = [
        f"Admin API: {base}/api/v1 (tokens: sluice admin create-token)",
        f"Admin console: {base}/",
    ]
    if signin_link is not None:
        lines.append(f"  Sign in (once, within 15 minutes): {base}/signin/{signin_link}")
    return "\n".join(lines)


async def first_start_link(cfg: SluiceConfig) -> str | None:
    """The one-time console sign-in token when no admin token exists yet, else None."""
    engine = create_engine(cfg.database)
    try:
        secret = await resolve_secret(cfg, engine)
        return await issue_if_first_start(engine, secret, SystemClock())
    finally:
        await engine.dispose()


class GatewayWithAdmin(AnnouncingServer):
    """The gateway's server, serving the admin API on the same loop while it runs."""

    def __init__(
        self,
        config: uvicorn.Config,
        announce: Callable[[], None],
        admin: uvicorn.Server | None,
        admin_sock: socket.socket | None,
    ) -> None:
        super().__init__(config, announce)
        self._admin = admin
        self._admin_sock = admin_sock

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        task = None
        if self._admin is not None and self._admin_sock is not None:
            # _serve, not serve: the gateway alone captures signals and then stops both.
            task = asyncio.get_running_loop().create_task(
                self._admin._serve(sockets=[self._admin_sock])
            )
        try:
            await super()._serve(sockets)
        finally:
            if task is not None and self._admin is not None:
                self._admin.should_exit = True
                await task


def admin_in_thread(cfg: SluiceConfig, sock: socket.socket | None) -> None:
    """For ``--workers N``: the admin API in the parent, on a daemon thread."""
    if sock is None:
        return
    server = admin_server(cfg, None)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sluice-admin", daemon=True
    )
    thread.start()
