"""``sluice budgets``: spending limits per organization, team, project, key or principal."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from ulid import ULID

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
from sluice.cli.tables import Col, print_table
from sluice.governance.key_admin import KeyAdminError, resolve_key
from sluice.governance.windows import WINDOWS, window_bounds
from sluice.store.budgets_repo import SCOPES, Budget, BudgetsRepo
from sluice.store.keys_repo import KeysRepo

app = typer.Typer(
    help="Budgets: spending limits with block or warn on breach.", no_args_is_help=True
)


def _micros(usd: str) -> int:
    try:
        value = Decimal(usd)
    except ArithmeticError as exc:
        raise typer.BadParameter(f"{usd!r} is not an amount in USD") from exc
    if value <= 0:
        raise typer.BadParameter("--limit must be positive")
    return int(value * 1_000_000)


def _check(scope: str | None, window: str | None, on_breach: str | None, fmt: str | None) -> None:
    if scope is not None and scope not in SCOPES:
        raise typer.BadParameter(f"--scope must be one of {', '.join(SCOPES)}")
    if window is not None and window not in WINDOWS:
        raise typer.BadParameter(f"--window must be one of {', '.join(WINDOWS)}")
    if on_breach is not None and on_breach not in ("block", "warn"):
        raise typer.BadParameter("--on-breach must be block or warn")
    if fmt is not None and fmt not in ("json", "slack"):
        raise typer.BadParameter("--webhook-format must be json or slack")


async def _with_repo(config_path: Path | None, action: Any) -> Any:
    config = config_or_exit(config_path)
    async with open_db(config) as (engine, _secret):
        return await action(BudgetsRepo(engine))


async def _resolve(repo: BudgetsRepo, ident: str) -> Budget:
    found = await repo.find(ident)
    if len(found) != 1:
        fail(f"no budget with id or name {ident!r}" if not found else f"{ident!r} is ambiguous")
    return found[0]


async def _with_spent(repo: BudgetsRepo, budget: Budget) -> dict[str, Any]:
    start, end = window_bounds(budget.window, SystemClock().now_ms())
    data = budget.public_dict()
    data["window_start"] = start
    data["window_end"] = end
    data["spent_usd"] = await repo.spent_micros(budget, start) / 1_000_000
    return data


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
    now = SystemClock().now_ms()
    budget = Budget(
        id=str(ULID()),
        name=name,
        scope=scope,
        target=target,
        window=window,
        limit_micros=_micros(limit),
        on_breach=on_breach,
        webhook_url=webhook,
        webhook_format=webhook_format,
        created_at=now,
        updated_at=now,
    )

    async def action() -> dict[str, Any]:
        async with open_db(config_or_exit(config)) as (engine, _secret):
            repo = BudgetsRepo(engine)
            resolved = await _resolve_target(KeysRepo(engine), scope, target)
            saved = dataclasses.replace(budget, target=resolved)
            await repo.insert(saved)
            return await _with_spent(repo, saved)

    _show([run(action)], as_json, single=True)


async def _resolve_target(keys: KeysRepo, scope: str, target: str) -> str:
    """A virtual_key target becomes the key's id (it may be given as a prefix or a name); a
    target no key carries yet is a warning, since the budget would apply to nothing."""
    if scope == "virtual_key":
        try:
            return (await resolve_key(keys, target)).id
        except KeyAdminError as exc:
            if "matches" in str(exc):
                fail(str(exc))
            warn(
                f"no key with id, display prefix or name {target!r} exists yet; "
                "this budget applies to nothing until one does"
            )
            return target
    if not await keys.field_in_use(scope, target):
        warn(f"no key has {scope} {target!r} yet; this budget applies once one does")
    return target


@app.command("list")
def list_budgets(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List budgets with what is spent in their current window."""

    async def action(repo: BudgetsRepo) -> list[dict[str, Any]]:
        return [await _with_spent(repo, b) for b in await repo.list_all()]

    _show(run(lambda: _with_repo(config, action)), as_json)


@app.command()
def show(
    ident: str = typer.Argument(..., metavar="ID"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one budget (by id or name)."""

    async def action(repo: BudgetsRepo) -> dict[str, Any]:
        return await _with_spent(repo, await _resolve(repo, ident))

    _show([run(lambda: _with_repo(config, action))], as_json, single=True)


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

    async def action(repo: BudgetsRepo) -> dict[str, Any]:
        budget = dataclasses.replace(
            await _resolve(repo, ident), updated_at=SystemClock().now_ms(), **changes
        )
        await repo.save(budget)
        return await _with_spent(repo, budget)

    _show([run(lambda: _with_repo(config, action))], as_json, single=True)


@app.command()
def reset(
    ident: str = typer.Argument(..., metavar="ID"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Start counting from now: spend before this moment no longer counts."""

    async def action(repo: BudgetsRepo) -> dict[str, Any]:
        now = SystemClock().now_ms()
        budget = dataclasses.replace(await _resolve(repo, ident), reset_at=now, updated_at=now)
        await repo.save(budget)
        return await _with_spent(repo, budget)

    _show([run(lambda: _with_repo(config, action))], as_json, single=True)


@app.command()
def delete(
    ident: str = typer.Argument(..., metavar="ID"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete a budget."""

    async def action(repo: BudgetsRepo) -> dict[str, Any]:
        budget = await _resolve(repo, ident)
        await repo.delete(budget.id)
        return {"id": budget.id, "deleted": True}

    result = run(lambda: _with_repo(config, action))
    if as_json:
        print_json(result)
    else:
        console.print(f"deleted budget {result['id']}")
