"""``sluice traces``: turns from the local trace store, and one turn's span tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
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
)
from sluice.store.traces_repo import TracesRepo

app = typer.Typer(help="Traces per turn, from the local trace store.", no_args_is_help=True)


def _key_id(key: str) -> str:
    """A key id, or a full key / display prefix (the id is the ULID inside it)."""
    return key[11:37] if key.startswith("lw_vk_") and len(key) >= 37 else key


def _duration(start_ns: int, end_ns: int) -> str:
    ms = max(0, end_ns - start_ns) / 1e6
    return f"{ms / 1000:.2f}s" if ms >= 1000 else f"{ms:.0f}ms"


@app.command("list")
def list_traces(
    session: str | None = typer.Option(None, "--session", help="Only this session's turns."),
    key: str | None = typer.Option(None, "--key", help="Only this key (id or full key)."),
    limit: int = typer.Option(50, "--limit", min=1),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """One line per turn: agent, session, model calls, tools, tokens, cost, duration."""
    cfg = config_or_exit(config)

    async def fetch() -> list[dict[str, Any]]:
        async with open_db(cfg) as (engine, _secret):
            repo = TracesRepo(engine)
            return await repo.turns(session=session, key=_key_id(key) if key else None, limit=limit)

    rows = run(fetch)
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
            r["agent"] or "-",
            r["session_id"] or "-",
            str(r["model_calls"]),
            str(r["tools"]),
            f"{int(r['input_tokens'])}/{int(r['output_tokens'])}",
            f"{int(r['cost_micros']) / 1e6:.6f}",
            _duration(int(r["start_ns"]), int(r["end_ns"])),
            iso(int(r["start_ns"]) // 1_000_000),
        )
    # Never squash a row into unreadable columns: a wide line wraps, like kubectl's.
    Console(width=max(console.width, 180)).print(table)


def _label(span: dict[str, Any]) -> str:
    attrs = orjson.loads(span["attributes"])
    parts = [f"[bold]{span['name']}[/bold]", _duration(span["start_ns"], span["end_ns"])]
    if span["name"].startswith("chat "):
        parts.append(f"tokens {span['input_tokens']}/{span['output_tokens']}")
        cached = attrs.get("gen_ai.usage.cache_read.input_tokens")
        if cached:
            parts.append(f"cache read {cached}")
        if span["cost_micros"] is not None:
            parts.append(f"${span['cost_micros'] / 1e6:.6f}")
        if attrs.get("gen_ai.response.finish_reasons"):
            parts.append(f"stop {','.join(attrs['gen_ai.response.finish_reasons'])}")
        if span["request_id"]:
            parts.append(span["request_id"])
    elif span["name"].startswith("execute_tool "):
        parts.append(str(attrs.get("gen_ai.tool.call.id", "")))
    elif attrs.get("gen_ai.conversation.id"):
        parts.append(f"session {attrs['gen_ai.conversation.id']}")
    if span["error"]:
        parts.append(f"[red]error {span['error']}[/red]")
    return "  ".join(parts)


@app.command("show")
def show(
    trace_id: str = typer.Argument(..., help="A trace id from `sluice traces list`."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Print one turn as a tree: agent -> model calls -> tools."""
    cfg = config_or_exit(config)

    async def fetch() -> list[dict[str, Any]]:
        async with open_db(cfg) as (engine, _secret):
            return await TracesRepo(engine).spans(trace_id)

    spans = run(fetch)
    if not spans:
        fail(f"no spans for trace {trace_id}")
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
