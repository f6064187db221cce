"""The admin REST API (issue #15): keys, roles, project scoping, errors, OpenAPI, and changes
in force on the gateway before the response returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.testing import FakeAnthropic

from admin_support import Plane, admin_plane


@pytest.fixture
async def plane(fake: FakeAnthropic, tmp_path: Path) -> AsyncIterator[Plane]:
    async with admin_plane("sqlite", tmp_path, fake.url) as p:
        yield p


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_minted_key_works_at_once_and_changes_apply_at_once(
    kind: str, fake: FakeAnthropic, tmp_path: Path
) -> None:
    async with admin_plane(kind, tmp_path, fake.url) as plane:
        status, key, _ = await plane.call(
            "POST", "/keys", json={"name": "ci", "principal": "bob", "project": "web"}
        )
        assert status == 201 and key["key"].startswith("lw_vk_live_")
        assert (await plane.infer(key["key"]))[0] == 200  # no wait, no poll
        status, _, _ = await plane.call("POST", f"/keys/{key['id']}/disable")
        assert status == 200
        assert (await plane.infer(key["key"]))[0] == 403  # disabled
        assert (await plane.call("POST", f"/keys/{key['id']}/enable"))[0] == 200
        assert (await plane.infer(key["key"]))[0] == 200
        # A budget already exceeded ($0.000001 < one call's worst case): the next is refused.
        status, budget, _ = await plane.call(
            "POST",
            "/budgets",
            json={"scope": "principal", "target": "bob", "window": "day", "limit_usd": 0.000001},
        )
        assert status == 201, budget
        status, body = await plane.infer(key["key"])
        assert status == 402 and body["error"]["code"] == "budget_exceeded"
        assert (await plane.call("DELETE", f"/budgets/{budget['id']}"))[0] == 204
        assert (await plane.infer(key["key"]))[0] == 200
        rotated = (await plane.call("POST", f"/keys/{key['id']}/rotate", json={"grace_s": 0}))[1]
        assert (await plane.infer(key["key"]))[0] == 401
        assert (await plane.infer(rotated["key"]))[0] == 200
        assert (await plane.call("DELETE", f"/keys/{key['id']}"))[0] == 204
        assert (await plane.infer(rotated["key"]))[0] == 403  # revoked


async def test_key_contract(plane: Plane) -> None:
    status, key, _ = await plane.call(
        "POST",
        "/keys",
        json={
            "name": "alice",
            "principal": "alice",
            "project": "web",
            "config": {"policy_rules": {"tools": {"deny": ["^Bash$"]}}},
        },
    )
    assert status == 201
    assert "key_hash" not in key and key["status"] == "active"
    kid = key["id"]
    status, got, _ = await plane.call("GET", f"/keys/{kid}")
    assert status == 200 and "key" not in got and got["name"] == "alice"
    assert got["config"]["policy_rules"]["tools"]["deny"] == ["^Bash$"]
    status, patched, _ = await plane.call(
        "PATCH", f"/keys/{kid}", json={"description": "laptop", "team": "core"}
    )
    assert status == 200 and patched["description"] == "laptop" and patched["team"] == "core"
    assert patched["config"] == got["config"]  # untouched when not given
    listed = (await plane.call("GET", "/keys?principal=alice"))[1]["data"]
    assert [k["id"] for k in listed] == [kid]
    assert (await plane.call("GET", "/keys?status=disabled"))[1]["data"] == []
    assert (await plane.call("POST", f"/keys/{kid}/revoke"))[1]["status"] == "revoked"
    status, body, _ = await plane.call("POST", f"/keys/{kid}/enable")
    assert status == 409 and body["error"]["type"] == "conflict"
    status, body, _ = await plane.call("POST", f"/keys/{kid}/rotate")
    assert status == 409


async def test_invalid_key_config_is_a_422_with_the_field_path(plane: Plane) -> None:
    status, body, _ = await plane.call(
        "POST",
        "/keys",
        json={"name": "x", "config": {"rate_limits": {"rpm": -1}, "nonsense": 1}},
    )
    assert status == 422 and body["error"]["type"] == "validation_error"
    paths = {p["path"] for p in body["error"]["problems"]}
    assert {"config.rate_limits.rpm", "config.nonsense"} <= paths
    status, body, _ = await plane.call("POST", "/keys", json={"principal": "no-name"})
    assert status == 422 and body["error"]["problems"][0]["path"] == "name"
    kid = (await plane.call("POST", "/keys", json={"name": "y"}))[1]["id"]
    status, body, _ = await plane.call(
        "PATCH", f"/keys/{kid}", json={"config": {"rate_limits": {"rpm": "many"}}}
    )
    assert status == 422 and body["error"]["problems"][0]["path"] == "config.rate_limits.rpm"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nope", "Basic abc", "Bearer sl_adm_" + "0" * 26 + "x" * 32],
)
async def test_no_or_bad_token_is_401(plane: Plane, header: str | None) -> None:
    status, body, headers = await plane.call("GET", "/keys", token=None if header is None else "x")
    assert status == 401 and body["error"]["type"] == "unauthorized"
    assert headers.get("WWW-Authenticate") == "Bearer"
    if header is not None:
        import aiohttp

        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{plane.admin.url}/api/v1/keys", headers={"authorization": header}) as r,
        ):
            assert r.status == 401


async def test_expired_and_revoked_tokens_are_401(plane: Plane, tmp_path: Path) -> None:
    from sluice.base.clock import SystemClock
    from sluice.governance.admin_tokens import TokenAdmin
    from sluice.store.admin_tokens_repo import AdminTokensRepo

    from support import SECRET

    tokens = TokenAdmin(
        AdminTokensRepo(plane.gateway.app.services.engine), SECRET.encode(), SystemClock()
    )
    short = await tokens.create("short", "admin", expires_at=SystemClock().now_ms() + 300)
    assert (await plane.call("GET", "/keys", token=short.token))[0] == 200
    import asyncio

    await asyncio.sleep(0.4)
    assert (await plane.call("GET", "/keys", token=short.token))[0] == 401
    revoked = await tokens.create("gone", "admin")
    await tokens.revoke(revoked.row.id)
    assert (await plane.call("GET", "/keys", token=revoked.token))[0] == 401


async def test_viewer_reads_but_may_not_change(plane: Plane) -> None:
    kid = (await plane.call("POST", "/keys", json={"name": "k"}))[1]["id"]
    for method, path, body in [
        ("POST", "/keys", {"name": "v"}),
        ("PATCH", f"/keys/{kid}", {"name": "v"}),
        ("DELETE", f"/keys/{kid}", None),
        ("POST", f"/keys/{kid}/disable", None),
        ("POST", f"/keys/{kid}/rotate", None),
        (
            "POST",
            "/budgets",
            {"scope": "project", "target": "web", "window": "day", "limit_usd": 1},
        ),
    ]:
        status, err, _ = await plane.call(method, path, token="viewer", json=body)
        assert status == 403 and err["error"]["type"] == "forbidden", (method, path)
    for path in ("/keys", f"/keys/{kid}", "/budgets", "/spend", "/requests", "/audit"):
        assert (await plane.call("GET", path, token="viewer"))[0] == 200, path


async def test_project_tokens_see_nothing_of_other_projects(plane: Plane) -> None:
    web = (await plane.call("POST", "/keys", json={"name": "w", "project": "web"}))[1]
    ops = (await plane.call("POST", "/keys", json={"name": "o", "project": "ops"}))[1]
    for token, mine, theirs in (("web", web, ops), ("ops", ops, web)):
        listed = (await plane.call("GET", "/keys", token=token))[1]["data"]
        assert [k["id"] for k in listed] == [mine["id"]]
        assert (await plane.call("GET", f"/keys?project={theirs['project']}", token=token))[1][
            "data"
        ] == []
        assert (await plane.call("GET", f"/keys/{mine['id']}", token=token))[0] == 200
        # Another project's key does not exist for this token: 404, not 403.
        for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/revoke")):
            json = {"name": "z"} if method == "PATCH" else None
            status, _, _ = await plane.call(
                method, f"/keys/{theirs['id']}{suffix}", token=token, json=json
            )
            assert status == 404, (token, method, suffix)
    # Creating in (or moving to) another project is forbidden; no project means its own.
    status, _, _ = await plane.call(
        "POST", "/keys", token="web", json={"name": "x", "project": "ops"}
    )
    assert status == 403
    status, created, _ = await plane.call("POST", "/keys", token="web", json={"name": "x"})
    assert status == 201 and created["project"] == "web"
    status, _, _ = await plane.call(
        "PATCH", f"/keys/{web['id']}", token="web", json={"project": "ops"}
    )
    assert status == 403
    assert (await plane.call("GET", f"/keys/{ops['id']}"))[1]["status"] == "active"


async def test_errors_are_json(plane: Plane) -> None:
    status, body, _ = await plane.call("GET", "/keys/NOPE")
    assert status == 404 and body == {
        "error": {"type": "not_found", "message": "no key with id 'NOPE'"}
    }
    status, body, _ = await plane.call("GET", "/nowhere")
    assert status == 404 and body["error"]["type"] == "not_found"


async def test_openapi_lists_every_route(plane: Plane) -> None:
    status, doc, _ = await plane.call("GET", "/openapi.json", token=None)
    assert status == 200 and doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in (
        "/api/v1/keys",
        "/api/v1/keys/{key_id}",
        "/api/v1/keys/{key_id}/rotate",
        "/api/v1/keys/{key_id}/disable",
        "/api/v1/keys/{key_id}/enable",
        "/api/v1/keys/{key_id}/revoke",
        "/api/v1/budgets",
        "/api/v1/budgets/{budget_id}",
        "/api/v1/budgets/{budget_id}/reset",
        "/api/v1/spend",
        "/api/v1/requests",
        "/api/v1/requests/{request_id}",
        "/api/v1/audit",
    ):
        assert path in paths, path
    assert set(paths["/api/v1/keys/{key_id}"]) == {"get", "patch", "delete"}
