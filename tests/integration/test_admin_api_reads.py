"""The admin API's budgets, spend, requests and audit resources, and secrets kept out of the
database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sluice.testing import FakeAnthropic

from admin_support import Plane, admin_plane
from support import database_files

BUDGET = {"scope": "project", "target": "web", "window": "day", "limit_usd": 5}


@pytest.fixture
async def plane(fake: FakeAnthropic, tmp_path: Path) -> AsyncIterator[Plane]:
    async with admin_plane("sqlite", tmp_path, fake.url) as p:
        yield p


async def _key(plane: Plane, project: str, principal: str = "alice") -> dict[str, Any]:
    return (
        await plane.call(
            "POST",
            "/keys",
            json={"name": f"{principal}-{project}", "project": project, "principal": principal},
        )
    )[1]


async def _until(plane: Plane, path: str, check: Any, token: str = "admin") -> Any:
    for _ in range(250):
        body = (await plane.call("GET", path, token=token))[1]
        if check(body):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path}: never {check}")


async def test_budget_contract(plane: Plane) -> None:
    key = await _key(plane, "web")
    status, created, _ = await plane.call(
        "POST",
        "/budgets",
        json={
            **BUDGET,
            "name": "web-daily",
            "on_breach": "warn",
            "webhook_url": "https://hooks.example/T0/secret-path",
        },
    )
    assert status == 201 and created["limit_usd"] == 5 and created["warnings"] == []
    assert created["spent_usd"] == 0 and created["reserved_usd"] == 0
    assert created["window_end"] - created["window_start"] == 86_400_000
    bid = created["id"]
    assert (await plane.infer(key["key"]))[0] == 200
    shown = await _until(plane, f"/budgets/{bid}", lambda b: b["spent_usd"] > 0)
    assert shown["reserved_usd"] == 0  # settled: nothing in flight
    status, patched, _ = await plane.call("PATCH", f"/budgets/{bid}", json={"limit_usd": 7.5})
    assert status == 200 and patched["limit_usd"] == 7.5 and patched["name"] == "web-daily"
    status, reset, _ = await plane.call("POST", f"/budgets/{bid}/reset")
    assert status == 200 and reset["spent_usd"] == 0 and reset["reset_at"] > 0
    listed = (await plane.call("GET", "/budgets"))[1]["data"]
    assert [b["id"] for b in listed] == [bid]
    assert (await plane.call("DELETE", f"/budgets/{bid}"))[0] == 204
    assert (await plane.call("GET", f"/budgets/{bid}"))[0] == 404


async def test_budget_validation(plane: Plane) -> None:
    for bad, path in (
        ({**BUDGET, "scope": "galaxy"}, "scope"),
        ({**BUDGET, "window": "year"}, "window"),
        ({**BUDGET, "limit_usd": 0}, "limit_usd"),
        ({**BUDGET, "on_breach": "shrug"}, "on_breach"),
        ({**BUDGET, "colour": "red"}, "colour"),
    ):
        status, body, _ = await plane.call("POST", "/budgets", json=bad)
        assert status == 422 and body["error"]["problems"][0]["path"] == path, bad
    bid = (await plane.call("POST", "/budgets", json=BUDGET))[1]["id"]
    status, body, _ = await plane.call("PATCH", f"/budgets/{bid}", json={"window": None})
    assert status == 422
    # A target no key carries yet is accepted, with a warning.
    status, body, _ = await plane.call("POST", "/budgets", json={**BUDGET, "target": "nobody-yet"})
    assert status == 201 and "applies once one does" in body["warnings"][0]


async def test_budgets_are_scoped_to_the_token_project(plane: Plane) -> None:
    web_key = await _key(plane, "web")
    ops_key = await _key(plane, "ops")
    web = (await plane.call("POST", "/budgets", json=BUDGET))[1]
    ops = (await plane.call("POST", "/budgets", json={**BUDGET, "target": "ops"}))[1]
    on_key = await plane.call(
        "POST",
        "/budgets",
        token="web",
        json={**BUDGET, "scope": "virtual_key", "target": web_key["id"]},
    )
    assert on_key[0] == 201
    team = await plane.call("POST", "/budgets", json={**BUDGET, "scope": "team", "target": "t"})
    seen = {b["id"] for b in (await plane.call("GET", "/budgets", token="web"))[1]["data"]}
    assert seen == {web["id"], on_key[1]["id"]}
    for bid in (ops["id"], team[1]["id"]):
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/reset")):
            assert (await plane.call(method, f"/budgets/{bid}{suffix}", token="web"))[0] == 404
    for body in (
        {**BUDGET, "target": "ops"},
        {**BUDGET, "scope": "virtual_key", "target": ops_key["id"]},
        {**BUDGET, "scope": "principal", "target": "alice"},
    ):
        assert (await plane.call("POST", "/budgets", token="web", json=body))[0] == 403, body


async def test_spend_and_requests(plane: Plane) -> None:
    web = await _key(plane, "web", "alice")
    ops = await _key(plane, "ops", "bob")
    for key in (web, web, ops):
        assert (await plane.infer(key["key"]))[0] == 200
    rows = await _until(plane, "/requests", lambda b: len(b["data"]) == 3)
    groups = (await plane.call("GET", "/spend?group_by=principal"))[1]
    assert {r["principal"]: r["requests"] for r in groups["data"]} == {"alice": 2, "bob": 1}
    assert all(r["cost_usd"] > 0 for r in groups["data"])
    day = (await plane.call("GET", "/spend?group_by=day"))[1]["data"]
    assert len(day) == 1 and len(day[0]["day"]) == 10 and day[0]["requests"] == 3
    for group in ("key", "project", "team", "model", "request_class"):
        assert (await plane.call("GET", f"/spend?group_by={group}"))[0] == 200
    assert (await plane.call("GET", "/spend?group_by=galaxy"))[0] == 422
    future = (await plane.call("GET", "/spend?group_by=key&from=2999-01-01"))[1]["data"]
    assert future == []
    # Project tokens see their project's spend and requests only.
    mine = (await plane.call("GET", "/spend?group_by=project", token="web"))[1]["data"]
    assert [r["project"] for r in mine] == ["web"]
    web_rows = (await plane.call("GET", "/requests", token="web"))[1]["data"]
    assert len(web_rows) == 2 and {r["key"] for r in web_rows} == {web["id"]}
    ops_id = next(r["request_id"] for r in rows["data"] if r["key"] == ops["id"])
    assert (await plane.call("GET", f"/requests/{ops_id}", token="web"))[0] == 404
    one = (await plane.call("GET", f"/requests/{ops_id}"))[1]
    assert one["principal"] == "bob" and one["status"] == 200
    # Filters and keyset pagination: two pages of one, then the end.
    first = (await plane.call("GET", f"/requests?key={web['id']}&limit=1"))[1]
    second = (
        await plane.call("GET", f"/requests?key={web['id']}&limit=1&cursor={first['next_cursor']}")
    )[1]
    assert first["data"][0]["request_id"] != second["data"][0]["request_id"]
    third = (
        await plane.call("GET", f"/requests?key={web['id']}&limit=1&cursor={second['next_cursor']}")
    )[1]
    assert third["data"] == [] and third["next_cursor"] is None
    assert len((await plane.call("GET", "/requests?principal=bob&status=200"))[1]["data"]) == 1
    assert (await plane.call("GET", "/requests?cursor=garbage"))[0] == 400


async def test_audit_has_every_mutation_and_no_secret(plane: Plane, tmp_path: Path) -> None:
    key = (await plane.call("POST", "/keys", json={"name": "a", "project": "web"}))[1]
    kid = key["id"]
    rotated = (await plane.call("POST", f"/keys/{kid}/rotate"))[1]
    await plane.call("PATCH", f"/keys/{kid}", json={"description": "d"})
    await plane.call("POST", f"/keys/{kid}/disable")
    await plane.call("POST", f"/keys/{kid}/enable")
    await plane.call("POST", f"/keys/{kid}/revoke")
    bid = (
        await plane.call(
            "POST",
            "/budgets",
            json={**BUDGET, "webhook_url": "https://hooks.slack.test/services/T0/B0/XYZsecret"},
        )
    )[1]["id"]
    await plane.call("PATCH", f"/budgets/{bid}", json={"limit_usd": 9})
    await plane.call("POST", f"/budgets/{bid}/reset")
    await plane.call("DELETE", f"/budgets/{bid}")
    page = (await plane.call("GET", "/audit?limit=100"))[1]
    actions = [r["action"] for r in page["data"]]
    api_actions = [a for a in actions if not a.startswith("tokens.")]
    assert api_actions == [
        "budgets.delete",
        "budgets.reset",
        "budgets.update",
        "budgets.create",
        "keys.revoke",
        "keys.enable",
        "keys.disable",
        "keys.update",
        "keys.rotate",
        "keys.create",
    ]
    newest = page["data"][0]
    assert newest["actor"] == "admin-token" and newest["before"]["limit_usd"] == 9
    assert newest["after"] is None
    update = next(r for r in page["data"] if r["action"] == "keys.update")
    assert update["before"]["description"] is None and update["after"]["description"] == "d"
    # Paging, and a project token sees its project's rows only.
    first = (await plane.call("GET", "/audit?limit=2"))[1]
    rest = (await plane.call("GET", f"/audit?limit=100&cursor={first['next_cursor']}"))[1]
    assert [r["id"] for r in first["data"] + rest["data"]] == [r["id"] for r in page["data"]]
    web = (await plane.call("GET", "/audit?limit=100", token="web"))[1]["data"]
    assert web and all(r["project"] == "web" for r in web)
    # No secret anywhere in the database files (WAL included).
    db_files = database_files(tmp_path)
    data = b"".join(p.read_bytes() for p in db_files)
    for secret in (key["key"], rotated["key"], *plane.tokens.values()):
        assert secret.encode() not in data, secret[:12]
    # The budget row must keep its webhook URL (to send); the audit log keeps only its host.
    audit_text = str(page["data"])
    assert "XYZsecret" not in audit_text and "hooks.slack.test" in audit_text
    assert "key_hash" not in audit_text and "token_hash" not in audit_text
