"""The ``sluice`` command."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from pathlib import Path
from typing import Any

import typer

from sluice.cli import admin_cmd, budgets_cmd, keys_cmd, providers_cmd, spend_cmd, traces_cmd
from sluice.cli.common import (
    UNCONFIRMED,
    UNCONFIRMED_EXIT,
    ConfigOption,
    config_or_exit,
    console,
    err_console,
    fail,
)
from sluice.cli.ports import METRICS_SETTING, ensure_free, port_taken_message
from sluice.config.loader import ConfigProblems, default_config_path, load_config
from sluice.config.models import WORKERS_NEED_REDIS, SluiceConfig

app = typer.Typer(help="Sluice: a self-hosted AI gateway for Claude Code.", no_args_is_help=True)
config_app = typer.Typer(help="Check configuration.", no_args_is_help=True)
mock_app = typer.Typer(
    help="Built-in fake upstreams (for tests, demos and benchmarks).", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(budgets_cmd.app, name="budgets")
app.add_typer(providers_cmd.app, name="providers")
app.add_typer(mock_app, name="mock")
app.add_typer(traces_cmd.app, name="traces")
app.add_typer(admin_cmd.app, name="admin")
app.command("spend")(spend_cmd.spend)


@app.command()
def serve(
    config: Path | None = ConfigOption,
    host: str | None = typer.Option(None, "--host"),
    port: int | None = typer.Option(None, "--port"),
    workers: int | None = typer.Option(None, "--workers"),
) -> None:
    """Run the gateway."""
    from sluice.cli.admin_listener import admin_in_thread, admin_line, bind_admin, first_start_link
    from sluice.cli.startup import announce
    from sluice.logs import configure_logging
    from sluice.telemetry.metrics_server import metrics_banner

    cfg = config_or_exit(config)
    bind_host, bind_port, n_workers = _preflight(cfg, config, host, port, workers)
    configure_logging(cfg.server.log_level)
    # Migrate once here, so workers (or the app) start on a schema already at head.
    asyncio.run(_migrate(cfg.database))
    options = _uvicorn_options(cfg, bind_host, bind_port)
    url = f"http://{bind_host}:{bind_port}"
    metrics = metrics_banner(cfg.metrics, n_workers)
    admin_sock = bind_admin(cfg)
    admin_text = None
    if admin_sock is not None:  # first start: a one-time console link in the banner
        admin_text = admin_line(admin_sock, asyncio.run(first_start_link(cfg)))
    if n_workers > 1:
        announce(None, cfg, url, n_workers, metrics, config, admin_text)()
        admin_in_thread(cfg, admin_sock)
        _run_workers(config, n_workers, options)
        return
    banner = (url, metrics, admin_text)
    _serve_one_worker(cfg, config, options, banner, admin_sock)


def _preflight(
    cfg: SluiceConfig,
    config: Path | None,
    host: str | None,
    port: int | None,
    workers: int | None,
) -> tuple[str, int, int]:
    """(host, port, workers) to serve on, once the settings allow it and the ports are free."""
    from sluice.cli.startup import warn_empty_provider_keys

    n_workers = workers or cfg.server.workers
    if n_workers > 1 and not cfg.redis:
        typer.echo(f"error: --workers {n_workers}: {WORKERS_NEED_REDIS}", err=True)
        raise typer.Exit(2)
    warn_empty_provider_keys(config or default_config_path())
    bind_host = host or cfg.server.host
    bind_port = port if port is not None else cfg.server.port
    ensure_free(bind_host, bind_port, "--port or server.port")
    if cfg.metrics.enabled and n_workers == 1:  # several workers take the first free ports
        # A busy metrics port never stops the gateway (replicas on one host share a config).
        ensure_free(cfg.metrics.host, cfg.metrics.port, METRICS_SETTING, fatal=False)
    return bind_host, bind_port, n_workers


def _serve_one_worker(
    cfg: SluiceConfig,
    config: Path | None,
    options: dict[str, Any],
    banner: tuple[str, str, str | None],
    admin_sock: socket.socket | None,
) -> None:
    """One worker: the gateway and the admin plane on one event loop."""
    import uvicorn

    from sluice.cli.admin_listener import GatewayWithAdmin, admin_server
    from sluice.cli.startup import announce
    from sluice.server.app import SluiceApp

    url, metrics, admin_text = banner
    sluice_app = SluiceApp(cfg)
    show = announce(sluice_app, cfg, url, 1, metrics, config, admin_text)
    admin = (
        admin_server(
            cfg,
            lambda: sluice_app.services.budgets.counters,
            lambda: sluice_app.services.circuits(),
        )
        if admin_sock
        else None
    )
    server = GatewayWithAdmin(uvicorn.Config(sluice_app, **options), show, admin, admin_sock)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn logged why


def _uvicorn_options(cfg: SluiceConfig, host: str, port: int) -> dict[str, Any]:
    from sluice.server.edge_limits import http_protocol

    return dict(
        host=host,
        port=port,
        loop="uvloop",
        http=http_protocol(cfg.server),  # httptools with edge limits (picklable for workers)
        lifespan="on",
        server_header=False,
        access_log=False,
        # Sluice reads neither the client's address nor the scheme: uvicorn's proxy-headers
        # middleware would wrap every request to rewrite them from X-Forwarded-* for nothing.
        proxy_headers=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


def _run_workers(config: Path | None, n_workers: int, options: dict[str, Any]) -> None:
    import uvicorn

    from sluice.telemetry.metrics_server import WORKERS_ENV

    # Workers import the app by name; each builds its own state from the same file.
    chosen = config or default_config_path()
    if chosen is not None:
        os.environ["SLUICE_CONFIG"] = str(chosen.resolve())
    os.environ[WORKERS_ENV] = str(n_workers)  # metrics: one port per worker
    uvicorn.run("sluice.server.app:create_app", factory=True, workers=n_workers, **options)


async def _migrate(url: str) -> None:
    from sluice.store.db import create_engine, migrate

    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@config_app.command("check")
def config_check(config: Path | None = ConfigOption) -> None:
    """Validate the config file; print every problem with its path; exit non-zero on any."""
    chosen = config or default_config_path()
    try:
        cfg = load_config(chosen)
    except ConfigProblems as exc:
        for problem in exc.problems:
            err_console.print(f"{exc.source}: {problem}", highlight=False)
        raise typer.Exit(1) from exc
    source = str(chosen) if chosen else "(defaults)"
    console.print(
        f"{source}: OK ({len(cfg.providers)} provider(s), database {cfg.database.split(':')[0]})",
        highlight=False,
    )


def _scenario_help() -> str:
    from sluice.testing.named import SCENARIO_HELP

    # One paragraph per line: rich keeps them apart, and nothing is cut with "...".
    return "\n\n".join(f"{name}: {text}" for name, text in SCENARIO_HELP.items())


@mock_app.command("anthropic", epilog="Scenarios:\n\n" + _scenario_help())
def mock_anthropic(
    port: int = typer.Option(8090, "--port"),
    host: str = typer.Option("127.0.0.1", "--host"),
    scenario: str = typer.Option("text", "--scenario", help="One of the scenarios listed below."),
) -> None:
    """Start the built-in fake Anthropic upstream."""
    from sluice.testing import SCENARIO_NAMES
    from sluice.testing.fake_anthropic import serve_forever

    if scenario not in SCENARIO_NAMES:
        raise typer.BadParameter(f"unknown scenario; one of: {', '.join(SCENARIO_NAMES)}")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_forever(port, scenario, host=host))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        fail(port_taken_message(host, port, "--port"))


def main() -> None:
    unconfirmed: list[str] = []
    UNCONFIRMED.set(unconfirmed)
    try:
        app()
    except SystemExit as done:
        # A key/budget change some running gateway did not confirm: not a success.
        if unconfirmed and done.code in (0, None):
            raise SystemExit(UNCONFIRMED_EXIT) from None
        raise
    if unconfirmed:
        raise SystemExit(UNCONFIRMED_EXIT)


__all__ = ["app", "config_or_exit", "load_config", "main"]
