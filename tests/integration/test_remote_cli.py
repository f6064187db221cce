"""The CLI against the admin API (issue #15): no config file, no database, only
SLUICE_ADMIN_URL and SLUICE_ADMIN_TOKEN; the real ``sluice`` in a subprocess."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sluice.testing import FakeAnthropic

from admin_support import Plane, admin_plane

SRC = Path(__file__).resolve().parents[2] / "src"  # this checkout's code in the child


@pytest.fixture
async def plane(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Plane]:
    monkeypatch.setenv("SLUICE_KEK", base64.b64encode(os.urandom(32)).decode())  # the server's
    (tmp_path / "server").mkdir()  # the server's files, apart from the CLI's empty home
    async with admin_plane("sqlite", tmp_path / "server", fake.url) as p:
        yield p


async def sluice(
    plane: Plane, tmp_path: Path, *args: str, token: str | None = "admin", stdin: bytes = b""
) -> tuple[int, str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(SRC),
        "COLUMNS": "200",
    }
    if token is not None:  # None: no admin API given, the CLI works locally
        env |= {
            "SLUICE_ADMIN_URL": plane.admin.url,
            "SLUICE_ADMIN_TOKEN": plane.tokens.get(token, token),
        }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "sluice"),
        *args,
        cwd=home,  # empty: no sluice.yaml to fall back on
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def ok(plane: Plane, tmp_path: Path, *args: str) -> Any:
    code, out, err = await sluice(plane, tmp_path, *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_keys_budgets_spend_traces_remotely(plane: Plane, tmp_path: Path) -> None:
    key = await ok(plane, tmp_path, "keys", "create", "--name", "ci", "--principal", "bob")
    assert key["key"].startswith("lw_vk_live_") and key["principal"] == "bob"
    assert (await plane.infer(key["key"]))[0] == 200  # in force at once
    listed = await ok(plane, tmp_path, "keys", "list")
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    shown = await ok(plane, tmp_path, "keys", "show", "ci")  # by name, as locally
    assert shown["id"] == key["id"]
    updated = await ok(
        plane,
        tmp_path,
        "keys",
        "update",
        "ci",
        "--team",
        "core",
        "--set",
        'policy_rules.tools.deny=["^Bash$"]',
    )
    assert updated["team"] == "core"
    assert updated["config"]["policy_rules"]["tools"]["deny"] == ["^Bash$"]
    disabled = await ok(plane, tmp_path, "keys", "disable", key["id"])
    assert disabled["status"] == "disabled"
    assert (await plane.infer(key["key"]))[0] == 403
    await ok(plane, tmp_path, "keys", "enable", key["id"])
    rotated = await ok(plane, tmp_path, "keys", "rotate", key["id"], "--grace", "0")
    assert (await plane.infer(key["key"]))[0] == 401
    assert (await plane.infer(rotated["key"]))[0] == 200

    budget = await ok(
        plane,
        tmp_path,
        "budgets",
        "create",
        "--scope",
        "principal",
        "--target",
        "bob",
        "--window",
        "day",
        "--limit",
        "5",
        "--name",
        "bob-day",
    )
    assert budget["limit_usd"] == 5 and budget["spent_usd"] >= 0
    assert [b["id"] for b in await ok(plane, tmp_path, "budgets", "list")] == [budget["id"]]
    changed = await ok(plane, tmp_path, "budgets", "update", "bob-day", "--limit", "7")
    assert changed["limit_usd"] == 7
    await ok(plane, tmp_path, "budgets", "reset", "bob-day")
    assert (await ok(plane, tmp_path, "budgets", "delete", "bob-day"))["deleted"] is True

    totals = set()
    for by in ("key", "principal", "project", "team", "model", "day", "request_class"):
        rows = await ok(plane, tmp_path, "spend", "--by", by)
        totals.add(sum(r["requests"] for r in rows))
    assert len(totals) == 1 and totals.pop() >= 2  # every grouping counts the same rows
    by_principal = await ok(plane, tmp_path, "spend", "--by", "principal")
    assert by_principal[0]["principal"] == "bob" and "cost_micros" in by_principal[0]
    code, table, _ = await sluice(plane, tmp_path, "spend", "--by", "principal")
    assert code == 0 and "bob" in table

    await ok(plane, tmp_path, "traces", "list")  # the turns API answers (maybe no turns)
    code, _, _ = await sluice(plane, tmp_path, "keys", "revoke", key["id"])
    assert code == 0 and (await plane.infer(rotated["key"]))[0] == 403


async def test_api_errors_exit_non_zero_with_the_api_message(plane: Plane, tmp_path: Path) -> None:
    code, out, err = await sluice(plane, tmp_path, "keys", "list", token="sk_admin_wrong")
    assert code == 1 and out == "" and "401" in err
    code, _, err = await sluice(plane, tmp_path, "keys", "create", "--name", "x", token="viewer")
    assert code == 1 and "403" in err and "viewer" in err.lower()
    code, _, err = await sluice(plane, tmp_path, "keys", "show", "nope")
    assert code == 1 and "nope" in err
    # A viewer still reads.
    code, _, err = await sluice(plane, tmp_path, "budgets", "list", token="viewer")
    assert code == 0, err


async def test_providers_remotely(plane: Plane, fake: FakeAnthropic, tmp_path: Path) -> None:
    listed = await ok(plane, tmp_path, "providers", "list")
    served = plane.gateway.app.config.providers["anthropic-primary"].models
    assert listed == [{"id": "anthropic-primary", "type": "anthropic", "models": served}]
    circuits = await ok(plane, tmp_path, "providers", "status")
    assert circuits["anthropic-primary"]["state"] == "closed"
    code, table, _ = await sluice(plane, tmp_path, "providers", "status")
    assert code == 0 and "anthropic-primary" in table and "closed" in table
    before = await ok(plane, tmp_path, "providers", "credentials", "web")
    assert [(p["id"], p["override"]) for p in before] == [("anthropic-primary", None)]

    secret = "sk-ant-project-web-own-key-via-cli-7788"
    args = ("providers", "set-credential", "web", "anthropic-primary", "--json-file", "-")
    stdin = json.dumps({"api_key": secret}).encode()
    code, out, err = await sluice(plane, tmp_path, *args, stdin=stdin)
    assert code == 0 and "…7788" in out and secret not in out + err, (out, err)
    key = (await plane.call("POST", "/keys", json={"name": "w", "project": "web"}))[1]["key"]
    assert (await plane.infer(key))[0] == 200  # in force at once, with the project's key
    sent = dict((k.lower(), v) for k, v in fake.messages_requests()[-1].headers)
    assert sent["x-api-key"] == secret
    shown = await ok(plane, tmp_path, "providers", "credentials", "web")
    assert shown[0]["override"]["last4"] == "7788" and secret not in json.dumps(shown)
    code, table, _ = await sluice(plane, tmp_path, "providers", "credentials", "web")
    assert code == 0 and "api_key" in table and "7788" in table and secret not in table
    tested = await ok(plane, tmp_path, "providers", "test", "web", "anthropic-primary")
    assert tested["ok"] is True and tested["credential"] == "project"

    # Refusals: a viewer may not set one; without the admin API there is no local path.
    code, _, err = await sluice(plane, tmp_path, *args, token="viewer", stdin=stdin)
    assert code == 1 and "403" in err
    code, _, err = await sluice(plane, tmp_path, *args, token=None, stdin=stdin)
    assert code == 1 and "SLUICE_ADMIN_URL" in err
    code, _, err = await sluice(plane, tmp_path, *args, stdin=b"[1, 2]")
    assert code == 1 and "JSON object" in err

    code, out, _ = await sluice(
        plane, tmp_path, "providers", "clear-credential", "web", "anthropic-primary"
    )
    assert code == 0 and "server's credential" in out
    after = await ok(plane, tmp_path, "providers", "credentials", "web")
    assert after[0]["override"] is None
    assert (await plane.infer(key))[0] == 200
    sent = dict((k.lower(), v) for k, v in fake.messages_requests()[-1].headers)
    assert sent["x-api-key"] != secret
