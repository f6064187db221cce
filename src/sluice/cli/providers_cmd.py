"""`sluice providers`: configured providers, live circuit states, and projects' credentials.

Circuit breakers live in each running gateway process, so ``status`` asks a running gateway
(its ``/readyz``), by default the one this config file describes; remotely it asks the admin
API, which answers for the gateway it runs beside.

A project's own credentials (Settings → Model Providers) are set through the admin API only
(``--url``/``--token`` or ``SLUICE_ADMIN_URL``/``SLUICE_ADMIN_TOKEN``): the admin server holds
the key-encryption key, so an admin's machine never needs it, and the secret travels once,
to the server that seals it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import typer
from rich.table import Table

from sluice.cli.common import ConfigOption, JsonOption, config_or_exit, console, fail, print_json
from sluice.cli.remote import Remote, TokenOption, UrlOption, current, remember, segment
from sluice.cli.tables import Col, print_table

app = typer.Typer(help="Upstream providers and their circuit breakers.", no_args_is_help=True)


@app.callback()
def _remote(url: str | None = UrlOption, token: str | None = TokenOption) -> None:
    """Providers (remotely with --url/--token or SLUICE_ADMIN_URL)."""
    remember(url, token)


def _needs_remote(what: str) -> Remote:
    remote = current()
    if remote is None:
        fail(
            f"{what} goes through the admin API, which holds the key-encryption key: "
            "give --url and --token (or set SLUICE_ADMIN_URL and SLUICE_ADMIN_TOKEN)"
        )
    return remote


@app.command("list")
def list_providers(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """The providers in the config file (no secrets)."""
    remote = current()
    if remote is not None:
        rows = [
            {"id": p["id"], "type": p["type"], "models": p["models"]}
            for p in remote.call("GET", "/providers")["data"]
        ]
    else:
        cfg = config_or_exit(config)
        rows = [{"id": pid, "type": p.type, "models": p.models} for pid, p in cfg.providers.items()]
    if as_json:
        print_json(rows)
        return
    print_table(
        [Col("id", keep=True), Col("type"), Col("models")],
        [[r["id"], r["type"], ", ".join(r["models"] or ["(any)"])] for r in rows],
    )


async def _fetch(url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(f"{url}/readyz") as r:
        payload: dict[str, Any] = orjson.loads(await r.read())
        return payload


def _gateway_circuits(config: Path | None, gateway: str | None) -> dict[str, dict[str, Any]]:
    if gateway is None:
        server = config_or_exit(config).server
        gateway = f"http://{server.host}:{server.port}"
    try:
        ready = asyncio.run(_fetch(gateway.rstrip("/")))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        fail(f"could not reach a gateway at {gateway}: {type(exc).__name__}")
    circuits: dict[str, dict[str, Any]] = ready.get("providers", {})
    return circuits


@app.command("status")
def status(
    config: Path | None = ConfigOption,
    gateway: str | None = typer.Option(
        None,
        "--gateway",
        help="A running gateway to ask (default: the admin API when working remotely, else "
        "server.host/port from the config).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Circuit-breaker state of each provider, as a running gateway sees it."""
    remote = current()
    if remote is not None and gateway is None:
        listed = remote.call("GET", "/providers")["data"]
        circuits = {p["id"]: p["circuit"] for p in listed if p["circuit"] is not None}
    else:
        circuits = _gateway_circuits(config, gateway)
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


def _credentials_path(project: str, provider_id: str = "") -> str:
    tail = f"/{segment(provider_id)}" if provider_id else ""
    return f"/projects/{segment(project)}/providers{tail}"


@app.command("credentials")
def credentials(
    project: str = typer.Argument(..., help="A project name."), as_json: bool = JsonOption
) -> None:
    """Which providers a project has its own credential for (never the secret)."""
    remote = _needs_remote("a project's credentials")
    rows = remote.call("GET", _credentials_path(project))["data"]
    if as_json:
        print_json(rows)
        return
    print_table(
        [Col("provider", keep=True), Col("type"), Col("credential"), Col("last 4"), Col("set by")],
        [
            [
                r["id"],
                r["type"],
                own.get("kind", "server's"),
                own.get("last4", ""),
                own.get("set_by", ""),
            ]
            for r in rows
            for own in [r["override"] or {}]
        ],
    )


def _body(json_file: Path | None, service_account: Path | None) -> dict[str, Any]:
    """The credential, read from a file or stdin: a secret on the command line would land in
    the shell's history and in every process listing."""
    if (json_file is None) == (service_account is None):
        fail("give --json-file (a JSON object, - for stdin) or --service-account (a key file)")
    try:
        if service_account is not None:
            return {"service_account_json": service_account.read_text(encoding="utf-8")}
        assert json_file is not None  # one of the two, checked above
        stdin = str(json_file) == "-"
        body = orjson.loads(
            typer.get_text_stream("stdin").read() if stdin else json_file.read_bytes()
        )
    except (OSError, orjson.JSONDecodeError) as exc:
        fail(f"could not read the credential: {exc}")
    if not isinstance(body, dict):
        fail('the credential must be a JSON object, e.g. {"api_key": "..."}')
    return body


@app.command("set-credential")
def set_credential(
    project: str = typer.Argument(..., help="A project name."),
    provider_id: str = typer.Argument(..., help="A provider id of the server config."),
    json_file: Path | None = typer.Option(
        None,
        "--json-file",
        help='The credential as JSON (- reads stdin): {"api_key"}, {"access_key_id", '
        '"secret_access_key"[, "session_token"]}, {"bearer_token"} or {"access_token"}.',
    ),
    service_account: Path | None = typer.Option(
        None, "--service-account", help="A Google service-account key file (Vertex)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Give a project its own credential for a provider (sealed on the server, never shown)."""
    remote = _needs_remote("setting a credential")
    item = remote.call(
        "PUT", _credentials_path(project, provider_id), _body(json_file, service_account)
    )
    if as_json:
        print_json(item)
        return
    override = item["override"]
    console.print(
        f"Project {project} now uses its own {override['kind']} (…{override['last4']}) "
        f"for {provider_id}.",
        highlight=False,
    )


@app.command("clear-credential")
def clear_credential(
    project: str = typer.Argument(..., help="A project name."),
    provider_id: str = typer.Argument(..., help="A provider id of the server config."),
) -> None:
    """Back to the server's credential for a provider."""
    remote = _needs_remote("clearing a credential")
    remote.call("DELETE", _credentials_path(project, provider_id))
    console.print(f"Project {project} uses the server's credential for {provider_id}.")


@app.command("test")
def test_connection(
    project: str = typer.Argument(..., help="A project name."),
    provider_id: str = typer.Argument(..., help="A provider id of the server config."),
    as_json: bool = JsonOption,
) -> None:
    """Call the provider's models endpoint with the credential the project's keys use.

    Exits 1 when the call fails."""
    remote = _needs_remote("testing a connection")
    result = remote.call("POST", _credentials_path(project, provider_id) + "/test")
    if as_json:
        print_json(result)
    elif result["ok"]:
        console.print(f"{provider_id}: ok, with the {result['credential']}'s credential")
    else:
        console.print(
            f"{provider_id}: failed (HTTP {result.get('status', '-')}) with the "
            f"{result['credential']}'s credential: {result['error']}",
            highlight=False,
            markup=False,
        )
    if not result["ok"]:
        raise typer.Exit(1)
