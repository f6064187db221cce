"""The `sluice` command: keys lifecycle, config check, spend, all against a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sluice.cli.main import app

runner = CliRunner()


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


def sluice(*args: str) -> dict | list:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_keys_lifecycle(config_file: Path) -> None:
    cfg = str(config_file)
    created = sluice(
        "keys",
        "create",
        "--name",
        "alice-laptop",
        "--principal",
        "alice",
        "--project",
        "web",
        "--team",
        "core",
        "--organization",
        "acme",
        "--description",
        "Alice's laptop",
        "--expires",
        "30d",
        "--config",
        cfg,
    )
    assert isinstance(created, dict)
    secret = created["key"]
    assert secret.startswith("lw_vk_live_") and len(secret) >= 11 + 26 + 24
    assert created["display_prefix"] == "lw_vk_live_" + secret[30:37]
    assert created["id"] == secret[11:37]
    assert created["principal"] == "alice" and created["status"] == "active"
    assert created["expires_at"] is not None

    listed = sluice("keys", "list", "--config", cfg)
    assert [k["id"] for k in listed] == [created["id"]]  # type: ignore[index]
    assert "key" not in listed[0] and secret not in json.dumps(listed)  # type: ignore[index]

    shown = sluice("keys", "show", created["display_prefix"], "--config", cfg)
    assert shown["name"] == "alice-laptop"  # type: ignore[call-overload]

    updated = sluice(
        "keys",
        "update",
        created["id"],
        "--set",
        'policy_rules.tools.deny=["^Bash$"]',
        "--set",
        "cache.mode=disable",
        "--set",
        'model_aliases={"fast":"claude-haiku-4-5-20251001"}',
        "--config",
        cfg,
    )
    assert updated["config"] == {  # type: ignore[call-overload]
        "policy_rules": {"tools": {"deny": ["^Bash$"]}},
        "cache": {"mode": "disable"},
        "model_aliases": {"fast": "claude-haiku-4-5-20251001"},
    }

    rotated = sluice("keys", "rotate", created["id"], "--grace", "1h", "--config", cfg)
    assert rotated["key"] != secret and rotated["id"] == created["id"]  # type: ignore[call-overload]
    assert rotated["rotation_grace_until"] is not None  # type: ignore[call-overload]

    assert sluice("keys", "disable", created["id"], "--config", cfg)["status"] == "disabled"  # type: ignore[call-overload]
    assert sluice("keys", "enable", created["id"], "--config", cfg)["status"] == "active"  # type: ignore[call-overload]
    assert sluice("keys", "revoke", created["id"], "--config", cfg)["status"] == "revoked"  # type: ignore[call-overload]
    again = runner.invoke(app, ["keys", "enable", created["id"], "--config", cfg])
    assert again.exit_code == 1
    assert "final" in again.output


def test_update_refuses_invalid_config(config_file: Path) -> None:
    cfg = str(config_file)
    created = sluice("keys", "create", "--name", "k", "--config", cfg)
    bad_regex = runner.invoke(
        app,
        [
            "keys",
            "update",
            created["id"],
            "--set",  # type: ignore[call-overload]
            'policy_rules.tools.deny=["(unclosed"]',
            "--config",
            cfg,
        ],
    )
    assert bad_regex.exit_code == 1
    assert "policy_rules.tools.deny" in bad_regex.output
    assert "invalid regular expression" in bad_regex.output
    unknown = runner.invoke(
        app,
        [
            "keys",
            "update",
            created["id"],
            "--set",
            "nonsense.x=1",  # type: ignore[call-overload]
            "--config",
            cfg,
        ],
    )
    assert unknown.exit_code == 1 and "nonsense: unknown field" in unknown.output
    assert sluice("keys", "show", created["id"], "--config", cfg)["config"] == {}  # type: ignore[call-overload]


def test_update_from_config_file(config_file: Path, tmp_path: Path) -> None:
    cfg = str(config_file)
    created = sluice("keys", "create", "--name", "k", "--test", "--config", cfg)
    assert created["key"].startswith("lw_vk_test_")  # type: ignore[call-overload]
    vk_yaml = tmp_path / "vk.yaml"
    vk_yaml.write_text("providers_allowed: [anthropic-primary]\nrate_limits: {rpm: 60}\n")
    updated = sluice(
        "keys",
        "update",
        created["id"],
        "--config-file",
        str(vk_yaml),  # type: ignore[call-overload]
        "--config",
        cfg,
    )
    assert updated["config"] == {  # type: ignore[call-overload]
        "providers_allowed": ["anthropic-primary"],
        "rate_limits": {"rpm": 60},
    }


def test_readable_output_without_json(config_file: Path) -> None:
    result = runner.invoke(app, ["keys", "create", "--name", "bob", "--config", str(config_file)])
    assert result.exit_code == 0
    assert "shown once" in result.output
    assert "lw_vk_live_" in result.output
    listing = runner.invoke(app, ["keys", "list", "--config", str(config_file)])
    assert "bob" in listing.output


def test_ambiguous_or_missing_id(config_file: Path) -> None:
    result = runner.invoke(app, ["keys", "show", "nope", "--config", str(config_file)])
    assert result.exit_code == 1
    assert "no key with id, display prefix or name" in result.output


def test_config_check_reports_every_problem_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "server: {port: 99999, max_body_bytes: 10}\n"
        "providers:\n"
        "  anthropic-primary: {type: anthropic, base_url: 'not a url', colour: blue}\n"
        "unknown_top: 1\n"
    )
    result = runner.invoke(app, ["config", "check", "--config", str(bad)])
    assert result.exit_code == 1
    out = result.output
    assert "providers.anthropic-primary.base_url: not a URL" in out
    assert "providers.anthropic-primary.colour: unknown field" in out
    assert "server.port:" in out and "server.max_body_bytes:" in out
    assert "unknown_top: unknown field" in out


def test_config_check_ok_and_env_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "database: sqlite:///${SLUICE_TEST_DB}\n"
        "secret_key: ${SLUICE_SECRET_KEY_UNSET_FOR_TEST}\n"
        "providers:\n"
        "  anthropic-primary: {type: anthropic, api_key: '${SLUICE_TEST_API_KEY}'}\n"
    )
    monkeypatch.setenv("SLUICE_TEST_DB", str(tmp_path / "x.db"))
    monkeypatch.setenv("SLUICE_TEST_API_KEY", "sk-ant-from-env")
    result = runner.invoke(app, ["config", "check", "--config", str(good)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    from sluice.config import load_config

    cfg = load_config(good)
    assert cfg.secret_key is None
    api_key = cfg.providers["anthropic-primary"].api_key
    assert api_key is not None and api_key.get_secret_value() == "sk-ant-from-env"
    assert "sk-ant-from-env" not in repr(cfg)
    assert cfg.database == f"sqlite:///{tmp_path / 'x.db'}"


def test_config_check_bad_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    result = runner.invoke(app, ["config", "check", "--config", str(bad)])
    assert result.exit_code == 1
    assert "invalid YAML" in result.output


def test_budgets_lifecycle(config_file: Path) -> None:
    cfg = str(config_file)
    created = sluice(
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
        "--on-breach",
        "block",
        "--webhook",
        "https://hooks.example/x",
        "--webhook-format",
        "slack",
        "--name",
        "alice-monthly",
        "--config",
        cfg,
    )
    assert created["limit_usd"] == 200.0 and created["spent_usd"] == 0  # type: ignore[call-overload]
    assert created["window_start"] < created["window_end"]  # type: ignore[call-overload]
    listed = sluice("budgets", "list", "--config", cfg)
    assert [b["name"] for b in listed] == ["alice-monthly"]  # type: ignore[index]
    updated = sluice(
        "budgets",
        "update",
        "alice-monthly",
        "--limit",
        "250.5",
        "--on-breach",
        "warn",
        "--config",
        cfg,
    )
    assert (updated["limit_usd"], updated["on_breach"]) == (250.5, "warn")  # type: ignore[call-overload]
    reset = sluice("budgets", "reset", created["id"], "--config", cfg)  # type: ignore[call-overload]
    assert reset["reset_at"] > 0  # type: ignore[call-overload]
    assert sluice("budgets", "show", "alice-monthly", "--config", cfg)["window"] == "month"  # type: ignore[call-overload]
    assert sluice("budgets", "delete", "alice-monthly", "--config", cfg)["deleted"] is True  # type: ignore[call-overload]
    assert sluice("budgets", "list", "--config", cfg) == []
    bad = runner.invoke(
        app,
        [
            "budgets",
            "create",
            "--scope",
            "galaxy",
            "--target",
            "x",
            "--window",
            "month",
            "--limit",
            "1",
            "--config",
            cfg,
        ],
    )
    assert bad.exit_code != 0 and "--scope" in bad.output
