"""``sluice traces``: turns from the local trace store, and one turn's span tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from sluice.cli.common import (
    ConfigOption,
    JsonOption,
    config_or_exit,
    console,
    fail,
    iso,
    open_db,
    print_json,
    run,
    warn,
)
from sluice.cli.remote import TokenOption, UrlOption, current, remember, resolve, segment
from sluice.cli.tables import clean
from sluice.governance.key_admin import KeyAdminError, resolve_key
from sluice.store.keys_repo import KeysRepo
from sluice.store.traces_repo import TracesRepo
from sluice.store.turn_queries import TurnFilter, turn_details, turn_rows

app = typer.Typer(help="Traces per turn, from the local trace store.", no_args_is_help=True)


@app.callback()
def _remote(url: str | None = UrlOption, token: str | None = TokenOption) -> None:
    """Traces per turn (remotely with --url/--token or SLUICE_ADMIN_URL)."""
    remember(url, token)


def _remote_turns(session: str | None, key: str | None, limit: int) -> list[dict[str, Any]]:
    """The API's turns in the local rows' shape, so the table and --json are the same."""
    remote = current()
    assert remote is not None
    key_id = resolve(remote, "keys", key, ("display_prefix", "name"))["id"] if key else None
    params = {"session": session, "key": key_id, "limit": limit}
    rows = []
    for t in remote.call("GET", "/turns", params=params)["data"]:
        cost = t["cost_usd"]
        start_ns = int(t["start_ms"]) * 1_000_000
        rows.append(
            {
                "trace_id": t["trace_id"],
                "agent": t["agent"],
                "session_id": t["session"],
                "vk_id": t["key"],
                "project": t["project"],
                "principal": t["principal"],
                "model_calls": t["model_calls"],
                "tools": len(t["tools_called"] or []),
                "input_tokens": t["tokens"]["input"],
                "output_tokens": t["tokens"]["output"],
                "cost_micros": round(cost * 1_000_000) if cost is not None else 0,
                "unpriced_calls": t["unpriced_calls"],
                "start_ns": start_ns,
                "end_ns": start_ns + int(t["duration_ms"]) * 1_000_000,
            }
        )
    return rows


def _duration(start_ns: int, end_ns: int) -> str:
    ms = max(0, end_ns - start_ns) / 1e6
    return f"{ms / 1000:.2f}s" if ms >= 1000 else f"{ms:.0f}ms"


@app.command("list")
def list_traces(
    session: str | None = typer.Option(None, "--session", help="Only this session's turns."),
    key: str | None = typer.Option(
        None, "--key", help="Only this key (id, display prefix, name or the key itself)."
    ),
    limit: int = typer.Option(50, "--limit", min=1),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """One line per turn: agent, session, model calls, tools, tokens, cost, duration."""
    if current() is not None:
        _print_turns(_remote_turns(session, key, limit), as_json)
        return
    cfg = config_or_exit(config)

    async def fetch() -> list[dict[str, Any]]:
        async with open_db(cfg) as (engine, _secret):
            key_id = None
            if key is not None:
                try:
                    key_id = (await resolve_key(KeysRepo(engine), key)).id
                except KeyAdminError as exc:
                    if "matches" in str(exc):
                        fail(str(exc))
                    warn(str(exc))
                    key_id = key
            rows = await turn_rows(engine, TurnFilter(session=session, key=key_id), limit)
            return await turn_details(engine, rows)

    _print_turns(run(fetch), as_json)


def _print_turns(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(
            [
                {
                    **{str(k): v for k, v in r.items()},
                    "duration_ms": (int(r["end_ns"]) - int(r["start_ns"])) // 1_000_000,
                }
                for r in rows
            ]
        )
        return
    table = Table("trace", "agent", "session", "model calls", "tools", "tokens in/out")
    table.columns[0].no_wrap = True  # the id to pass to `traces show`, always whole
    table.columns[0].min_width = 32
    for name in ("cost USD", "duration", "started"):
        table.add_column(name)
    for r in rows:
        table.add_row(
            r["trace_id"],
            Text(clean(r["agent"])),
            Text(clean(r["session_id"])),
            str(r["model_calls"]),
            str(r["tools"]),
            f"{int(r['input_tokens'])}/{int(r['output_tokens'])}",
            _turn_cost(r),
            _duration(int(r["start_ns"]), int(r["end_ns"])),
            iso(int(r["start_ns"]) // 1_000_000),
        )
    # Never squash a row into unreadable columns: a wide line wraps, like kubectl's.
    Console(width=max(console.width, 180)).print(table)


def _turn_cost(row: dict[str, Any]) -> str:
    """An unpriced model's calls make the cost unknown, never $0.000000."""
    unpriced = int(row["unpriced_calls"])
    if unpriced and unpriced == int(row["model_calls"]):
        return "unknown"
    cost = f"{int(row['cost_micros']) / 1e6:.6f}"
    return f"{cost} (+{unpriced} unpriced)" if unpriced else cost


def _safe(value: object) -> str:
    return escape(clean(value))


def _label(span: dict[str, Any]) -> str:
    attrs = orjson.loads(span["attributes"])
    # Stored strings: escaped for the terminal and for rich markup.
    parts = [f"[bold]{_safe(span['name'])}[/bold]", _duration(span["start_ns"], span["end_ns"])]
    if span["name"].startswith("chat "):
        parts.append(f"tokens {span['input_tokens']}/{span['output_tokens']}")
        cached = attrs.get("gen_ai.usage.cache_read.input_tokens")
        if cached:
            parts.append(f"cache read {cached}")
        written = attrs.get("gen_ai.usage.cache_creation.input_tokens")
        if written:
            parts.append(f"cache write {written}")
        cost = span["cost_micros"]
        if cost is not None:
            parts.append(f"${cost / 1e6:.6f}")
        elif span["input_tokens"] or span["output_tokens"]:
            parts.append("cost unknown")  # used tokens of a model with no known price
        if attrs.get("gen_ai.response.finish_reasons"):
            parts.append(f"stop {_safe(','.join(attrs['gen_ai.response.finish_reasons']))}")
        if span["request_id"]:
            parts.append(_safe(span["request_id"]))
    elif span["name"].startswith("execute_tool "):
        parts.append(_safe(attrs.get("gen_ai.tool.call.id", "")))
    elif attrs.get("gen_ai.conversation.id"):
        parts.append(f"session {_safe(attrs['gen_ai.conversation.id'])}")
    if span["error"]:
        parts.append(f"[red]error {_safe(span['error'])}[/red]")
    return "  ".join(parts)


@app.command("show")
def show(
    trace_id: str = typer.Argument(
        ..., help="A trace id from `sluice traces list`, or its first characters."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Print one turn as a tree: agent -> model calls -> tools."""
    remote = current()
    if remote is not None:
        turn = remote.call("GET", f"/turns/{segment(trace_id.strip())}")
        _print_spans(turn["trace_id"], _flatten(turn["spans"]), as_json)
        return
    cfg = config_or_exit(config)

    async def fetch() -> tuple[str, list[dict[str, Any]]]:
        async with open_db(cfg) as (engine, _secret):
            repo = TracesRepo(engine)
            matches = await repo.trace_ids(trace_id.strip())
            if len(matches) > 1:
                fail(f"{trace_id!r} matches several traces: {', '.join(matches)}")
            if not matches:
                fail(f"no trace with an id starting {trace_id!r} (see `sluice traces list`)")
            return matches[0], await repo.spans(matches[0])

    _print_spans(*run(fetch), as_json)


def _flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's span tree as the store's rows (start order), for the same output."""
    rows: list[dict[str, Any]] = []
    for node in nodes:
        start_ns = int(node["start_ms"]) * 1_000_000
        tokens = node["tokens"] or {}
        cost = node["cost_usd"]
        rows.append(
            {
                "span_id": node["span_id"],
                "parent_span_id": node["parent_span_id"],
                "name": node["name"],
                "start_ns": start_ns,
                "end_ns": start_ns + int(float(node["duration_ms"]) * 1_000_000),
                "input_tokens": tokens.get("input", 0),
                "output_tokens": tokens.get("output", 0),
                "cost_micros": round(cost * 1_000_000) if cost is not None else None,
                "request_id": node["request_id"],
                "error": node["error"],
                "attributes": orjson.dumps(node["attributes"]).decode(),
            }
        )
        rows.extend(_flatten(node["children"]))
    return sorted(rows, key=lambda r: int(r["start_ns"]))


def _print_spans(trace_id: str, spans: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(
            [
                {**{str(k): v for k, v in s.items()}, "attributes": orjson.loads(s["attributes"])}
                for s in spans
            ]
        )
        return
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:  # ordered by start time
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(span)
    tree = Tree(f"trace [bold]{trace_id}[/bold]")

    def grow(node: Tree, parent: str | None) -> None:
        for span in children.get(parent, []):
            grow(node.add(_label(span)), span["span_id"])

    grow(tree, None)
    console.print(tree)
