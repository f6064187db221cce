"""``sluice budgets``: spending limits per organization, team, project, key or principal."""

from __future__ import annotations

from decimal import Decimal
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
    given,
    iso,
    open_db,
    print_json,
    run,
    warn,
)
from sluice.cli.remote import Remote, TokenOption, UrlOption, current, remember, resolve
from sluice.cli.tables import Col, print_table
from sluice.governance.budget_admin import BudgetAdmin, BudgetAdminError, check_fields
from sluice.store.budgets_repo import BudgetsRepo
from sluice.store.keys_repo import KeysRepo

app = typer.Typer(
    help="Budgets: spending limits with block or warn on breach.", no_args_is_help=True
)


@app.callback()
def _remote(url: str | None = UrlOption, token: str | None = TokenOption) -> None:
    """Budgets (remotely with --url/--token or SLUICE_ADMIN_URL)."""
    remember(url, token)


def _remote_call(
    remote: Remote, method: str, ident: str, action: str = "", body: Any = None
) -> Any:
    """One budget's endpoint; a budget is found by id or, as locally, by name."""
    budget_id = resolve(remote, "budgets", ident, ("name",))["id"]
    return remote.call(method, f"/budgets/{budget_id}{action}", body)


def _micros(usd: str) -> int:
    try:
        value = Decimal(usd)
    except ArithmeticError as exc:
        raise typer.BadParameter(f"{usd!r} is not an amount in USD") from exc
    if value <= 0:
        raise typer.BadParameter("--limit must be positive")
    return int(value * 1_000_000)


def _check(scope: str | None, window: str | None, on_breach: str | None, fmt: str | None) -> None:
    try:
        check_fields(given(scope=scope, window=window, on_breach=on_breach, webhook_format=fmt))
    except BudgetAdminError as exc:
        raise typer.BadParameter(f"--{(exc.field or '').replace('_', '-')}: {exc}") from exc


async def _with_admin(config_path: Path | None, action: Any) -> Any:
    config = config_or_exit(config_path)
    async with open_db(config) as (engine, _secret):
        admin = BudgetAdmin(BudgetsRepo(engine), KeysRepo(engine), SystemClock())
        try:
            return await action(admin)
        except BudgetAdminError as exc:
            fail(str(exc))
    return None


def _show(rows: list[dict[str, Any]], as_json: bool, single: bool = False) -> None:
    if as_json:
        print_json(rows[0] if single else rows)
        return
    print_table(
        [
            Col("id", keep=True),
            Col("name", drop=2),
            Col("scope", keep=True),
            Col("target"),
            Col("window", drop=1),
            Col("limit $", justify="right"),
            Col("spent $", justify="right"),
            Col("on breach", drop=3),
        ],
        [
            [
                r["id"],
                r["name"],
                r["scope"],
                r["target"],
                r["window"],
                f"{r['limit_usd']:.2f}",
                f"{r['spent_usd']:.6f}",
                r["on_breach"],
            ]
            for r in rows
        ],
    )
    if single:
        console.print(f"window {iso(rows[0]['window_start'])} .. {iso(rows[0]['window_end'])}")


@app.command()
def create(
    scope: str = typer.Option(
        ..., "--scope", help="principal, project, team, organization or virtual_key"
    ),
    target: str = typer.Option(
        ...,
        "--target",
        help="What the scope matches: a principal (user id), project, team or organization "
        "name, or a key (id, display prefix or name).",
    ),
    window: str = typer.Option(
        ..., "--window", help="minute, hour, day, week, month or total (UTC)"
    ),
    limit: str = typer.Option(..., "--limit", help="USD"),
    on_breach: str = typer.Option(
        "block", "--on-breach", help="block (402) or warn (header, webhook)"
    ),
    webhook: str | None = typer.Option(None, "--webhook", help="URL for threshold/breach events"),
    webhook_format: str = typer.Option("json", "--webhook-format", help="json or slack"),
    name: str | None = typer.Option(None, "--name"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a budget."""
    _check(scope, window, on_breach, webhook_format)
    remote = current()
    if remote is not None:
        _micros(limit)  # the same message as locally for a bad amount
        body = given(name=name, webhook_url=webhook)
        body.update(scope=scope, target=target, window=window, limit_usd=limit)
        body.update(on_breach=on_breach, webhook_format=webhook_format)
        created = remote.call("POST", "/budgets", body)
        for message in created.pop("warnings", []):
            warn(message)
        _show([created], as_json, single=True)
        return

    async def action(admin: BudgetAdmin) -> dict[str, Any]:
        created = await admin.create(
            name=name,
            scope=scope,
            target=target,
            window=window,
            limit_micros=_micros(limit),
            on_breach=on_breach,
            webhook_url=webhook,
            webhook_format=webhook_format,
        )
        for message in created.warnings:
            warn(message)
        return await admin.status(created.budget)

    _show([run(lambda: _with_admin(config, action))], as_json, single=True)


@app.command("list")
def list_budgets(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List budgets with what is spent in their current window."""
    remote = current()
    if remote is not None:
        _show(remote.call("GET", "/budgets")["data"], as_json)
        return

    async def action(admin: BudgetAdmin) -> list[dict[str, Any]]:
        return [await admin.status(b) for b in await admin.list_all()]

    _show(run(lambda: _with_admin(config, action)), as_json)


@app.command()
def show(
    ident: str = typer.Argument(..., metavar="ID"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one budget (by id or name)."""
    remote = current()
    if remote is not None:
        _show([_remote_call(remote, "GET", ident)], as_json, single=True)
        return

    async def action(admin: BudgetAdmin) -> dict[str, Any]:
        return await admin.status(await admin.resolve(ident))

    _show([run(lambda: _with_admin(config, action))], as_json, single=True)


@app.command()
def update(
    ident: str = typer.Argument(..., metavar="ID"),
    limit: str | None = typer.Option(None, "--limit"),
    window: str | None = typer.Option(None, "--window"),
    on_breach: str | None = typer.Option(None, "--on-breach"),
    webhook: str | None = typer.Option(None, "--webhook"),
    webhook_format: str | None = typer.Option(None, "--webhook-format"),
    name: str | None = typer.Option(None, "--name"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Change a budget's limit, window, breach action or webhook."""
    _check(None, window, on_breach, webhook_format)
    changes = given(
        window=window,
        on_breach=on_breach,
        webhook_url=webhook,
        webhook_format=webhook_format,
        name=name,
    )
    if limit is not None:
        changes["limit_micros"] = _micros(limit)
    remote = current()
    if remote is not None:
        body = {k: v for k, v in changes.items() if k != "limit_micros"}
        if limit is not None:
            body["limit_usd"] = limit
        _show([_remote_call(remote, "PATCH", ident, body=body)], as_json, single=True)
        return

    async def action(admin: BudgetAdmin) -> dict[str, Any]:
        return await admin.status(await admin.update(await admin.resolve(ident), changes))

    _show([run(lambda: _with_admin(config, action))], as_json, single=True)


@app.command()
def reset(
    ident: str = typer.Argument(..., metavar="ID"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Start counting from now: spend before this moment no longer counts."""
    remote = current()
    if remote is not None:
        _show([_remote_call(remote, "POST", ident, "/reset")], as_json, single=True)
        return

    async def action(admin: BudgetAdmin) -> dict[str, Any]:
        return await admin.status(await admin.reset(await admin.resolve(ident)))

    _show([run(lambda: _with_admin(config, action))], as_json, single=True)


@app.command()
def delete(
    ident: str = typer.Argument(..., metavar="ID"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete a budget."""

    async def action(admin: BudgetAdmin) -> dict[str, Any]:
        budget = await admin.resolve(ident)
        await admin.delete(budget)
        return {"id": budget.id, "deleted": True}

    remote = current()
    if remote is not None:
        budget_id = resolve(remote, "budgets", ident, ("name",))["id"]
        remote.call("DELETE", f"/budgets/{budget_id}")
        result: dict[str, Any] = {"id": budget_id, "deleted": True}
    else:
        result = run(lambda: _with_admin(config, action))
    if as_json:
        print_json(result)
    else:
        console.print(f"deleted budget {result['id']}")
