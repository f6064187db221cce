"""`sluice providers list|status`: configured providers, and the live circuit states.

Circuit breakers live in each running gateway process, so ``status`` asks a running gateway
(its ``/readyz``), by default the one this config file describes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import typer
from rich.table import Table

from sluice.cli.common import ConfigOption, JsonOption, config_or_exit, console, fail
from sluice.cli.tables import Col, print_table

app = typer.Typer(help="Upstream providers and their circuit breakers.", no_args_is_help=True)


@app.command("list")
def list_providers(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """The providers in the config file (no secrets)."""
    cfg = config_or_exit(config)
    if as_json:
        rows = [{"id": pid, "type": p.type, "models": p.models} for pid, p in cfg.providers.items()]
        console.print_json(orjson.dumps(rows).decode())
        return
    print_table(
        [Col("id", keep=True), Col("type"), Col("models")],
        [[pid, p.type, ", ".join(p.models or ["(any)"])] for pid, p in cfg.providers.items()],
    )


async def _fetch(url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(f"{url}/readyz") as r:
        payload: dict[str, Any] = orjson.loads(await r.read())
        return payload


@app.command("status")
def status(
    config: Path | None = ConfigOption,
    url: str | None = typer.Option(
        None, "--url", help="A running gateway (default: server.host/port from the config)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Circuit-breaker state of each provider, as a running gateway sees it."""
    if url is None:
        server = config_or_exit(config).server
        url = f"http://{server.host}:{server.port}"
    try:
        ready = asyncio.run(_fetch(url.rstrip("/")))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        fail(f"could not reach a gateway at {url}: {type(exc).__name__}")
        return
    circuits: dict[str, dict[str, Any]] = ready.get("providers", {})
    if as_json:
        console.print_json(orjson.dumps(circuits).decode())
        return
    table = Table("provider", "circuit", "recent failures", "retry in (s)")
    for pid, info in circuits.items():
        colour = {"closed": "green", "open": "red"}.get(str(info["state"]), "yellow")
        table.add_row(
            pid,
            f"[{colour}]{info['state']}[/{colour}]",
            str(info["recent_failures"]),
            str(info["retry_in_s"]),
        )
    console.print(table)
