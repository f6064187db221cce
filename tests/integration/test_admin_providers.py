"""Provider credentials per project through the admin API: validated per provider type, sealed
at rest, never shown, used by the gateway for that project's keys at once, re-sealed by
``sluice admin rotate-kek``, and a missing or wrong KEK stops start-up with a clear message."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sluice.base.clock import SystemClock
from sluice.cli.main import app as cli_app
from sluice.config.models import SluiceConfig
from sluice.server.services import build_services
from sluice.store.sealing import KekError
from sluice.testing import FakeAnthropic
from sluice.testing.gateway import GatewayServer

from admin_support import Plane, admin_plane
from support import PROVIDER_KEY, SECRET, database_files

WEB_KEY = "sk-ant-web-project-own-key-0123456789-WXYZ"
DEAD = '  dead-openai: {type: openai, api_key: sk-server, base_url: "http://127.0.0.1:9/v1"}'
PATH = "/projects/web/providers"


def _kek() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
async def plane(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Plane]:
    monkeypatch.setenv("SLUICE_KEK", _kek())
    async with admin_plane("sqlite", tmp_path, fake.url, provider_yaml=DEAD) as p:
        yield p


async def _keys(plane: Plane) -> dict[str, dict[str, Any]]:
    keys = {}
    for project in ("web", "ops"):
        body = {"name": f"{project}-key", "project": project}
        keys[project] = (await plane.call("POST", "/keys", json=body))[1]
    return keys


def _upstream_key(fake: FakeAnthropic) -> str:
    return dict((k.lower(), v) for k, v in fake.messages_requests()[-1].headers)["x-api-key"]


async def test_credential_contract(plane: Plane) -> None:
    status, listed, _ = await plane.call("GET", PATH)
    assert status == 200 and [p["id"] for p in listed["data"]] == [
        "anthropic-primary",
        "dead-openai",
    ]
    first = listed["data"][0]
    assert first["override"] is None and first["circuit"]["state"] == "closed"
    for bad in ({}, {"api_key": ""}, {"api_key": "x", "colour": "red"}, {"bearer_token": "x"}):
        status, body, _ = await plane.call("PUT", f"{PATH}/anthropic-primary", json=bad)
        assert status == 422 and body["error"]["problems"], (bad, body)
    status, body, _ = await plane.call(
        "PUT", f"{PATH}/anthropic-primary", json={"api_key": WEB_KEY}
    )
    assert status == 200 and body["override"]["last4"] == "WXYZ", body
    assert body["override"]["kind"] == "api_key" and body["override"]["set_by"] == "admin-token"
    shown = await plane.call("GET", f"{PATH}/anthropic-primary", token="viewer")
    assert shown[1]["override"]["last4"] == "WXYZ" and WEB_KEY not in str(shown[1])
    # Roles and projects: viewers read, scoped tokens see only their project, ids must exist.
    assert (await plane.call("PUT", f"{PATH}/anthropic-primary", "viewer", {"api_key": "k"}))[
        0
    ] == 403
    assert (await plane.call("GET", PATH, token="ops"))[0] == 404
    assert (await plane.call("PUT", f"{PATH}/anthropic-primary", "ops", {"api_key": "k"}))[0] == 404
    assert (await plane.call("GET", PATH, token="web"))[0] == 200
    assert (await plane.call("PUT", f"{PATH}/nope", json={"api_key": "k"}))[0] == 404
    audit = (await plane.call("GET", "/audit"))[1]["data"]
    entry = next(a for a in audit if a["action"] == "providers.set")
    assert entry["project"] == "web" and entry["after"]["last4"] == "WXYZ"
    assert WEB_KEY not in str(audit)
    assert (await plane.call("DELETE", f"{PATH}/anthropic-primary"))[0] == 204
    assert (await plane.call("DELETE", f"{PATH}/anthropic-primary"))[0] == 404
    assert (await plane.call("GET", f"{PATH}/anthropic-primary"))[1]["override"] is None


async def test_per_type_validation(plane: Plane) -> None:
    good = await plane.call("PUT", f"{PATH}/dead-openai", json={"api_key": "sk-web-openai-1234"})
    assert good[0] == 200 and good[1]["override"]["last4"] == "1234"
    status, body, _ = await plane.call(
        "PUT", f"{PATH}/dead-openai", json={"access_key_id": "AKIA", "secret_access_key": "s"}
    )
    assert status == 422 and "openai" in body["error"]["message"]


async def test_gateway_serves_a_project_with_its_credential(
    plane: Plane, fake: FakeAnthropic, tmp_path: Path
) -> None:
    keys = await _keys(plane)
    status, _, headers = await plane.call(
        "PUT", f"{PATH}/anthropic-primary", json={"api_key": WEB_KEY}
    )
    assert status == 200 and "sluice-unconfirmed-replicas" not in headers
    # In force before the response: the very next request uses it, no waiting.
    assert (await plane.infer(keys["web"]["key"]))[0] == 200
    assert _upstream_key(fake) == WEB_KEY
    assert (await plane.infer(keys["ops"]["key"]))[0] == 200
    assert _upstream_key(fake) == PROVIDER_KEY  # another project: the server's credential
    # Sealed at rest: the secret's bytes are nowhere in the database files.
    for path in database_files(tmp_path):
        assert WEB_KEY.encode() not in path.read_bytes(), path
    # Test connection: the fake answers /v1/models; a dead upstream is an error, not a 500.
    tested = await plane.call("POST", f"{PATH}/anthropic-primary/test")
    assert tested[0] == 200 and tested[1]["ok"] is True and tested[1]["credential"] == "project"
    dead = (await plane.call("POST", f"{PATH}/dead-openai/test"))[1]
    assert dead["ok"] is False and dead["credential"] == "server" and dead["error"]
    assert (await plane.call("DELETE", f"{PATH}/anthropic-primary"))[0] == 204
    assert (await plane.infer(keys["web"]["key"]))[0] == 200
    assert _upstream_key(fake) == PROVIDER_KEY


async def _build(config: SluiceConfig) -> None:
    """A gateway's start-up (what `sluice serve` and GatewayServer run), torn down again."""
    async with contextlib.AsyncExitStack() as stack:
        await build_services(config, SystemClock(), stack)


async def _cli(*args: str) -> Any:
    # A thread of its own: the CLI runs its own event loop.
    return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args))


async def test_rotate_kek_and_start_up_errors(
    plane: Plane, fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = await _keys(plane)
    await plane.call("PUT", f"{PATH}/anthropic-primary", json={"api_key": WEB_KEY})
    config = tmp_path / "sluice.yaml"
    config.write_text(f"database: {plane.database}\nsecret_key: {SECRET}\n")
    new_kek = tmp_path / "kek.new"
    new_kek.write_text(_kek() + "\n")
    bad = tmp_path / "kek.bad"
    bad.write_text("not base64!")
    refused = await _cli("admin", "rotate-kek", "--new-kek-file", str(bad), "-c", str(config))
    assert refused.exit_code != 0 and "not base64" in refused.output
    rotated = await _cli("admin", "rotate-kek", "--new-kek-file", str(new_kek), "-c", str(config))
    assert rotated.exit_code == 0 and "Re-encrypted 1" in rotated.output, rotated.output
    # The old KEK no longer opens the store: a clear start-up error, never a 500 per request.
    with pytest.raises(KekError, match="does not open"):
        await _build(plane.gateway.app.config)
    monkeypatch.delenv("SLUICE_KEK")
    with pytest.raises(KekError, match="SLUICE_KEK"):
        await _build(plane.gateway.app.config)
    # With the new KEK (from secrets.kek_file) a gateway starts and serves the credential.
    cfg = plane.gateway.app.config.model_copy(
        update={
            "secrets": plane.gateway.app.config.secrets.model_copy(
                update={"kek_file": str(new_kek)}
            )
        }
    )
    gateway = GatewayServer(cfg)
    await gateway.start()
    try:
        again = Plane(gateway, plane.admin, plane.tokens, plane.database)
        assert (await again.infer(keys["web"]["key"]))[0] == 200
        assert _upstream_key(fake) == WEB_KEY
    finally:
        await gateway.stop()
