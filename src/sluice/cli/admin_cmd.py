"""``sluice admin``: tokens for the admin API (the token is shown once; only an HMAC of it
is stored, as for virtual keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sluice.base.clock import SystemClock
from sluice.cli.common import (
    ConfigOption,
    JsonOption,
    config_or_exit,
    console,
    fail,
    iso,
    open_db,
    parse_when,
    print_json,
    run,
)
from sluice.cli.tables import Col, print_table
from sluice.governance.admin_tokens import MintedToken, TokenAdmin, TokenError, public
from sluice.store.admin_tokens_repo import AdminTokensRepo
from sluice.store.credentials_repo import CredentialsRepo
from sluice.store.sealing import KekError, load_kek, parse_kek

app = typer.Typer(
    help="Admin API tokens, and the key that seals provider credentials.", no_args_is_help=True
)


async def _with_tokens(config_path: Path | None, action: Any) -> Any:
    config = config_or_exit(config_path)
    async with open_db(config) as (engine, secret):
        try:
            return await action(TokenAdmin(AdminTokensRepo(engine), secret, SystemClock()))
        except TokenError as exc:
            fail(str(exc))
    return None


@app.command("create-token")
def create_token(
    name: str = typer.Option(..., "--name", help="Who or what uses it; the audit log's actor."),
    role: str = typer.Option(..., "--role", help="admin (everything) or viewer (read only)"),
    project: str | None = typer.Option(
        None, "--project", help="Limit it to one project's keys, budgets, spend and requests."
    ),
    expires: str | None = typer.Option(None, "--expires", help="A date, or a duration: 90d."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Create an admin API token; it is printed this once."""
    if role not in ("admin", "viewer"):
        raise typer.BadParameter("--role must be admin or viewer")
    expires_at = parse_when(expires, SystemClock().now_ms(), future=True) if expires else None

    async def action(tokens: TokenAdmin) -> MintedToken:
        return await tokens.create(name, role, project, expires_at)

    minted: MintedToken = run(lambda: _with_tokens(config, action))
    payload = {"id": minted.row.id, "name": name, "role": role, "token": minted.token}
    if as_json:
        print_json(payload)
        return
    console.print(
        f"admin token {minted.row.id} ({name}, {role}{', project ' + project if project else ''})",
        highlight=False,
    )
    console.print("\n[bold]Token (shown once, store it now):[/bold]")
    console.print(minted.token, highlight=False, soft_wrap=True)


@app.command("list-tokens")
def list_tokens(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List admin tokens (never the tokens themselves)."""

    async def action(tokens: TokenAdmin) -> list[dict[str, Any]]:
        now = SystemClock().now_ms()
        return [public(row, now) for row in await tokens.list_all()]

    rows: list[dict[str, Any]] = run(lambda: _with_tokens(config, action))
    if as_json:
        print_json(rows)
        return
    print_table(
        [
            Col("id", keep=True),
            Col("name"),
            Col("role"),
            Col("project", drop=3),
            Col("status"),
            Col("expires", drop=2),
            Col("last used", drop=1),
        ],
        [
            [
                r["id"],
                r["name"],
                r["role"],
                r["project"],
                r["status"],
                iso(r["expires_at"]),
                iso(r["last_used_at"]),
            ]
            for r in rows
        ],
    )


@app.command("revoke-token")
def revoke_token(
    token_id: str = typer.Argument(..., metavar="ID"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Revoke an admin token (final): it is refused from the next request on."""

    async def action(tokens: TokenAdmin) -> dict[str, Any]:
        return public(await tokens.revoke(token_id), SystemClock().now_ms())

    row: dict[str, Any] = run(lambda: _with_tokens(config, action))
    if as_json:
        print_json(row)
    else:
        console.print(f"revoked admin token {row['id']} ({row['name']})", highlight=False)


@app.command("rotate-kek")
def rotate_kek(
    new_kek_file: Path = typer.Option(
        ..., "--new-kek-file", help="The new KEK: base64 of 32 bytes (or 32 raw bytes)."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Re-encrypt every stored provider credential under a new key-encryption key, in one
    transaction. The current KEK comes from SLUICE_KEK or secrets.kek_file. Afterwards, point
    SLUICE_KEK / secrets.kek_file at the new key and restart the gateways and the admin API."""
    cfg = config_or_exit(config)
    try:
        old = load_kek(cfg.secrets.kek_file)
        new = parse_kek(new_kek_file.read_bytes(), f"--new-kek-file {new_kek_file}")
    except (KekError, OSError) as exc:
        fail(str(exc))
    if old is None:
        fail("no current KEK: set SLUICE_KEK or secrets.kek_file to the key in use")

    async def rekey() -> int:
        async with open_db(cfg) as (engine, _secret):
            try:
                return await CredentialsRepo(engine).rekey(old, new)
            except KekError as exc:
                fail(f"nothing changed: {exc}")
        return 0

    count: int = run(rekey)
    console.print(
        f"Re-encrypted {count} provider credential(s). Now set SLUICE_KEK (or secrets.kek_file) "
        "to the new key and restart every gateway and the admin API."
    )
