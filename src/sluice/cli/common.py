"""Shared CLI plumbing: config and database access, time parsing, output."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.config.loader import ConfigProblems, load_config
from sluice.config.models import SluiceConfig
from sluice.store import config_version
from sluice.store.db import create_engine, migrate
from sluice.store.settings_repo import resolve_secret

T = TypeVar("T")
# Set by main() for one invocation: gateways that did not confirm a change (exit code 3).
UNCONFIRMED: ContextVar[list[str] | None] = ContextVar("sluice_unconfirmed", default=None)
UNCONFIRMED_EXIT = 3
console = Console()
err_console = Console(stderr=True)

ConfigOption = typer.Option(
    None, "--config", "-c", help="Config file (default: $SLUICE_CONFIG, then ./sluice.yaml)."
)
JsonOption = typer.Option(False, "--json", help="Machine-readable JSON output.")

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err_console.print(
        f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True
    )


def config_or_exit(path: Path | None) -> SluiceConfig:
    try:
        return load_config(path)
    except ConfigProblems as exc:
        for problem in exc.problems:
            err_console.print(f"{exc.source}: {problem}", highlight=False)
        raise typer.Exit(2) from exc


@asynccontextmanager
async def open_db(config: SluiceConfig) -> AsyncIterator[tuple[AsyncEngine, bytes]]:
    """The database; when the command changed a key or a budget, it returns only once every
    running gateway has applied the change (see ``config_version``)."""
    engine = create_engine(config.database)
    try:
        await migrate(engine)
        before = await config_version.current(engine)
        yield engine, await resolve_secret(config, engine)
        after = await config_version.current(engine)
        if after != before:
            await _await_gateways(engine, after, config.server.config_ack_timeout_s)
    finally:
        await engine.dispose()


async def _await_gateways(engine: AsyncEngine, version: int, timeout_s: float) -> None:
    acked = await config_version.wait_applied(engine, version, timeout_s)
    if not acked.lagging:
        return
    err_console.print(
        f"[red]error:[/red] the change is saved, but {len(acked.lagging)} running gateway(s) "
        f"did not confirm applying it within {timeout_s:g} s: {', '.join(acked.lagging)}. "
        "They may still admit requests under the old settings until they poll "
        "(server.key_refresh_seconds); check that they are healthy.",
        highlight=False,
    )
    # The result is still printed (a new key's secret is shown only once); main() then
    # exits with UNCONFIRMED_EXIT.
    pending = UNCONFIRMED.get()
    if pending is not None:
        pending.extend(acked.lagging)


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


def parse_when(text: str, now_ms: int, *, future: bool) -> int:
    """``2026-12-31``, an ISO datetime, or a duration (``30d``, ``12h``) from now."""
    match = _DURATION.fullmatch(text.strip())
    if match:
        seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
        return now_ms + seconds * 1000 if future else now_ms - seconds * 1000
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is neither a date nor a duration like 30d") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def given(**options: Any) -> dict[str, Any]:
    """The options the user actually passed (those not left at None)."""
    return {name: value for name, value in options.items() if value is not None}


def print_json(payload: Any) -> None:
    sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
