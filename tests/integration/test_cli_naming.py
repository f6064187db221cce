"""The CLI as a newcomer uses it at 80 columns: whole ids, one way to name keys, safe output."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from sluice.cli.main import app
from sluice.store.db import create_engine, migrate
from sluice.store.traces_repo import TracesRepo

runner = CliRunner()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sluice.yaml"
    path.write_text(
        f"database: sqlite:///{tmp_path / 'cli.db'}\n"
        "secret_key: cli-secret\n"
        "providers:\n"
        "  anthropic-primary: {type: anthropic, api_key: sk-ant-x, base_url: 'http://127.0.0.1:9'}\n"
    )
    return path


def cli(config: Path, *args: str, ok: bool = True) -> Result:
    result = runner.invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "80"})
    if ok:
        assert result.exit_code == 0, result.output
    return result


def mint(config: Path, name: str, *extra: str) -> dict[str, Any]:
    created: dict[str, Any] = json.loads(
        cli(config, "keys", "create", "--name", name, *extra, "--json").stdout
    )
    return created


def assert_fits(output: str) -> None:
    assert "…" not in output, output
    assert all(len(line) <= 80 for line in output.splitlines()), output


# --- item 3: tables at 80 columns -------------------------------------------------------------


def test_keys_list_shows_whole_ids_and_prefixes(config_file: Path) -> None:
    keys = [
        mint(config_file, f"laptop-{n}", "--principal", "alice", "--project", "web")
        for n in range(2)
    ]
    out = cli(config_file, "keys", "list").stdout
    assert_fits(out)
    for key in keys:
        assert key["id"] in out and key["display_prefix"] in out and key["name"] in out


def test_budgets_list_shows_whole_ids_and_scope(config_file: Path) -> None:
    mint(config_file, "a", "--principal", "alice")
    budget = json.loads(
        cli(
            config_file,
            "budgets",
            "create",
            "--scope",
            "principal",
            "--target",
            "alice",
            "--window",
            "month",
            "--limit",
            "200",
            "--name",
            "alice-monthly",
            "--json",
        ).stdout
    )
    out = cli(config_file, "budgets", "list").stdout
    assert_fits(out)
    assert budget["id"] in out and "principal" in out and "alice" in out


def test_spend_by_model_shows_whole_model_names(config_file: Path, tmp_path: Path) -> None:
    cli(config_file, "keys", "list")  # creates and migrates the database
    db = sqlite3.connect(tmp_path / "cli.db")
    with db:
        for n, model in enumerate(["claude-opus-4-8", "claude-haiku-4-5-20251001"]):
            db.execute(
                "insert into ledger (request_id, created_at, endpoint, streaming, status, "
                "duration_ms, client_disconnected, model_sent, input_tokens, output_tokens, "
                "cost_micros) values (?, 1, 'messages', 1, 200, 5, 0, ?, 123456, 654321, 1234567)",
                (f"req_{n}", model),
            )
    out = cli(config_file, "spend", "--by", "model").stdout
    assert_fits(out)
    assert "claude-opus-4-8" in out and "claude-haiku-4-5-20251001" in out
    assert "1.234567" in out


def test_budgets_create_help_lists_every_scope_and_window() -> None:
    out = runner.invoke(app, ["budgets", "create", "--help"], env={"COLUMNS": "80"}).stdout
    assert "…" not in out
    for word in ("organization", "team", "project", "virtual_key", "principal"):
        assert word in out, out
    for word in ("minute", "hour", "day", "week", "month", "total"):
        assert word in out, out


# --- item 4: one way to name a key --------------------------------------------------------


def test_every_key_command_takes_id_prefix_or_name(config_file: Path) -> None:
    key = mint(config_file, "alice-laptop")
    for ident in (key["id"], key["display_prefix"], "alice-laptop", key["key"]):
        shown = json.loads(cli(config_file, "keys", "show", ident, "--json").stdout)
        assert shown["id"] == key["id"], ident
    cli(config_file, "keys", "disable", "alice-laptop")
    cli(config_file, "keys", "enable", "alice-laptop")
    cli(config_file, "keys", "update", "alice-laptop", "--description", "mine")
    rotated = json.loads(cli(config_file, "keys", "rotate", "alice-laptop", "--json").stdout)
    assert rotated["id"] == key["id"]


def test_an_ambiguous_name_lists_the_matches(config_file: Path) -> None:
    one, two = mint(config_file, "shared"), mint(config_file, "shared")
    result = cli(config_file, "keys", "show", "shared", ok=False)
    assert result.exit_code == 1
    assert one["id"] in result.output and two["id"] in result.output


def test_budget_on_a_key_prefix_or_name_targets_the_key_id(config_file: Path) -> None:
    key = mint(config_file, "ci-runner")
    for ident in (key["display_prefix"], "ci-runner"):
        result = cli(
            config_file,
            "budgets",
            "create",
            "--scope",
            "virtual_key",
            "--target",
            ident,
            "--window",
            "day",
            "--limit",
            "5",
            "--json",
        )
        assert json.loads(result.stdout)["target"] == key["id"]
        assert "warning" not in result.output


def test_a_budget_target_nothing_matches_is_a_warning(config_file: Path) -> None:
    mint(config_file, "a", "--principal", "alice")
    quiet = cli(
        config_file,
        "budgets",
        "create",
        "--scope",
        "principal",
        "--target",
        "alice",
        "--window",
        "day",
        "--limit",
        "5",
    )
    assert "warning" not in quiet.output
    typo = cli(
        config_file,
        "budgets",
        "create",
        "--scope",
        "principal",
        "--target",
        "alcie",
        "--window",
        "day",
        "--limit",
        "5",
        "--json",
    )
    assert "warning" in typo.stderr and "alcie" in typo.stderr
    json.loads(typo.stdout)  # stdout stays machine-readable
    no_key = cli(
        config_file,
        "budgets",
        "create",
        "--scope",
        "virtual_key",
        "--target",
        "nobody",
        "--window",
        "day",
        "--limit",
        "5",
    )
    assert "warning" in no_key.stderr and "nobody" in no_key.stderr


def test_an_ambiguous_budget_key_target_is_refused(config_file: Path) -> None:
    mint(config_file, "twin")
    mint(config_file, "twin")
    result = cli(
        config_file,
        "budgets",
        "create",
        "--scope",
        "virtual_key",
        "--target",
        "twin",
        "--window",
        "day",
        "--limit",
        "5",
        ok=False,
    )
    assert result.exit_code == 1 and "matches 2 keys" in result.output
    assert json.loads(cli(config_file, "budgets", "list", "--json").stdout) == []


async def _write_span(db: Path, vk_id: str) -> None:
    engine = create_engine(f"sqlite:///{db}")
    try:
        await migrate(engine)
        row = {
            "trace_id": TRACE,
            "span_id": "00f067aa0ba902b7",
            "parent_span_id": None,
            "name": "invoke_agent claude-code",
            "kind": "internal",
            "start_ns": 1_000_000_000,
            "end_ns": 2_000_000_000,
            "session_id": "sess-1",
            "vk_id": vk_id,
            "project": None,
            "agent": "claude-code",
            "request_id": None,
            "input_tokens": 10,
            "output_tokens": 5,
            "cost_micros": 100,
            "error": None,
            "attributes": "{}",
            "created_at": 1,
        }
        await TracesRepo(engine).write([row])
    finally:
        await engine.dispose()


def test_traces_by_key_prefix_and_trace_id_prefix(config_file: Path, tmp_path: Path) -> None:
    key = mint(config_file, "alice-laptop")
    asyncio.run(_write_span(tmp_path / "cli.db", key["id"]))
    for ident in (key["display_prefix"], "alice-laptop", key["id"]):
        listed = json.loads(cli(config_file, "traces", "list", "--key", ident, "--json").stdout)
        assert [t["trace_id"] for t in listed] == [TRACE], ident
    shown = cli(config_file, "traces", "show", TRACE[:8]).stdout
    assert "invoke_agent claude-code" in shown and TRACE in shown
    missing = cli(config_file, "traces", "show", "ffff", ok=False)
    assert missing.exit_code == 1 and "no trace" in missing.output


# --- #11 item 12: stored strings never reach the terminal as escape codes -----------------


def test_control_characters_in_stored_strings_are_escaped(config_file: Path) -> None:
    key = mint(config_file, "\x1b[31mred\x07", "--principal", "[bold]x[/bold]")
    for args in (("keys", "list"), ("keys", "show", key["id"])):
        out = cli(config_file, *args).stdout
        assert "\x1b" not in out and "\x07" not in out, out
        assert "\\x1b[31mred\\x07" in out, out
    shown = cli(config_file, "keys", "show", key["id"]).stdout
    assert "[bold]x[/bold]" in shown  # printed as text, not read as markup


# --- item 6: clearing a setting -------------------------------------------------------------


def test_null_or_unset_removes_a_setting(config_file: Path, tmp_path: Path) -> None:
    key = mint(config_file, "k")
    cli(
        config_file,
        "keys",
        "update",
        "k",
        "--set",
        'rate_limits={"rpm": 60}',
        "--set",
        'providers_allowed=["anthropic-primary"]',
        "--set",
        "fallback.max_attempts=2",
    )
    cleared = cli(config_file, "keys", "update", "k", "--set", "rate_limits=null", "--json")
    assert json.loads(cleared.stdout)["config"] == {
        "providers_allowed": ["anthropic-primary"],
        "fallback": {"max_attempts": 2},
    }
    unset = cli(
        config_file,
        "keys",
        "update",
        key["id"],
        "--unset",
        "providers_allowed",
        "--set",
        "fallback.max_attempts=null",
        "--json",
    )
    assert json.loads(unset.stdout)["config"] == {}
    # A config file may say null too: that setting takes its default.
    doc = tmp_path / "vk.yaml"
    doc.write_text("rate_limits: null\nmodels_allowed: null\ncache: {mode: disable}\n")
    replaced = cli(config_file, "keys", "update", "k", "--config-file", str(doc), "--json")
    assert json.loads(replaced.stdout)["config"] == {"cache": {"mode": "disable"}}
