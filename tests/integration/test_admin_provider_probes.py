""" "Test connection" for Bedrock and Vertex providers: the admin API calls each cloud's models
endpoint (Bedrock's ListFoundationModels, Vertex's publishers.models.get) with the credential
the gateway would use, the server's or the project's, and reports a refused or unusable
credential as a failed check, never a 500."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sluice.config.providers import VertexProviderConfig
from sluice.providers.probe import probe_model
from sluice.testing import FakeAnthropic
from sluice.testing.fake_bedrock import FakeBedrock
from sluice.testing.fake_vertex import FakeVertex

from admin_support import Plane, admin_plane
from support import serve_app

PROJECT_TOKEN = "ya29.project-own-access-token-9876"
PATH = "/projects/web/providers"
ECHOED = "sk-server-openai-key-0123456789abcdef"


@pytest.fixture
async def bedrock() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as fake:
        yield fake


@pytest.fixture
async def vertex() -> AsyncIterator[FakeVertex]:
    # Only the project's token is accepted: the server's own is refused with a 401.
    async with FakeVertex(token=PROJECT_TOKEN) as fake:
        yield fake


async def _echo(request: web.Request) -> web.Response:
    """An upstream that refuses, echoing the request's headers in its error page (then 1 MiB)."""
    page = "".join(f"{k}: {v}\n" for k, v in request.headers.items()) + "x" * (1 << 20)
    return web.Response(status=401, text=page)


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/models", _echo)
    async with serve_app(app) as url:
        yield f"{url}/v1"


@pytest.fixture
async def plane(
    fake: FakeAnthropic,
    bedrock: FakeBedrock,
    vertex: FakeVertex,
    echo: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Plane]:
    monkeypatch.setenv("SLUICE_KEK", base64.b64encode(os.urandom(32)).decode())
    providers = (
        f'  aws: {{type: bedrock, region: eu-west-1, base_url: "{bedrock.url}",'
        " access_key_id: AKIASERVERKEY, secret_access_key: server-secret}\n"
        f'  gcp: {{type: vertex, project: test-project, base_url: "{vertex.base_url}",'
        " access_token: server-token, models: [claude-sonnet-4-5-20250929]}\n"
        f'  echo: {{type: openai, api_key: {ECHOED}, base_url: "{echo}"}}'
    )
    async with admin_plane("sqlite", tmp_path, fake.url, provider_yaml=providers) as p:
        yield p


def _auth(fake: FakeBedrock | FakeVertex) -> tuple[str, str]:
    last = fake.requests[-1]
    return last.path, dict((k.lower(), v) for k, v in last.headers)["authorization"]


async def test_bedrock_probe_signs_with_the_server_keys_then_the_projects(
    plane: Plane, bedrock: FakeBedrock
) -> None:
    status, tested, _ = await plane.call("POST", f"{PATH}/aws/test")
    assert status == 200 and tested["ok"] is True and tested["checked"] is True, tested
    assert tested["credential"] == "server"
    path, auth = _auth(bedrock)
    assert path == "/foundation-models" and bedrock.requests[-1].method == "GET"
    # SigV4 for the control plane: service bedrock, the provider's region, the server's key.
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIASERVERKEY/")
    assert "/eu-west-1/bedrock/aws4_request" in auth
    bearer = "ABSKbedrock-api-key-of-project-web-1234"
    put = await plane.call("PUT", f"{PATH}/aws", json={"bearer_token": bearer})
    assert put[0] == 200, put[1]
    tested = (await plane.call("POST", f"{PATH}/aws/test"))[1]
    assert tested["ok"] is True and tested["credential"] == "project", tested
    assert _auth(bedrock) == ("/foundation-models", f"Bearer {bearer}")
    assert bearer not in str(tested)


async def test_vertex_probe_reports_a_refused_token_and_uses_the_projects(
    plane: Plane, vertex: FakeVertex
) -> None:
    refused = (await plane.call("POST", f"{PATH}/gcp/test"))[1]
    assert refused["ok"] is False and refused["checked"] is True and refused["status"] == 401
    assert "UNAUTHENTICATED" in refused["error"]
    path, auth = _auth(vertex)
    assert path == "/v1/publishers/anthropic/models/claude-sonnet-4-5"
    assert auth == "Bearer server-token"
    body = {"access_token": PROJECT_TOKEN}
    assert (await plane.call("PUT", f"{PATH}/gcp", json=body))[0] == 200
    tested = (await plane.call("POST", f"{PATH}/gcp/test"))[1]
    assert tested == {
        "id": "gcp",
        "credential": "project",
        "ok": True,
        "checked": True,
        "status": 200,
        "error": None,
    }
    assert _auth(vertex)[1] == f"Bearer {PROJECT_TOKEN}"


async def test_an_unusable_service_account_is_a_failed_check(plane: Plane) -> None:
    """google-auth cannot load the key: reported with the reason, no call made, no 500."""
    key = {
        "type": "service_account",
        "client_email": "sluice@test-project.iam.gserviceaccount.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
        "private_key_id": "k-0001",
        "token_uri": "http://127.0.0.1:9/token",
    }
    put = await plane.call("PUT", f"{PATH}/gcp", json={"service_account_json": key})
    assert put[0] == 200 and put[1]["override"]["kind"] == "service_account", put
    status, tested, _ = await plane.call("POST", f"{PATH}/gcp/test")
    assert status == 200 and tested["ok"] is False and tested["checked"] is True, tested
    assert tested["error"].startswith("credentials:") and "not a key" not in tested["error"]


async def test_a_service_account_is_exchanged_for_a_token_and_that_token_is_used(
    plane: Plane, vertex: FakeVertex
) -> None:
    """google-auth signs a JWT with the project's key, trades it at the key's token endpoint
    (off the event loop: the endpoint runs on this loop), and the probe calls with the token."""
    grants: list[str] = []

    async def token(request: web.Request) -> web.Response:
        grants.append(str((await request.post())["grant_type"]))
        return web.json_response({"access_token": PROJECT_TOKEN, "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/token", token)
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    async with serve_app(app) as url:
        key = {
            "type": "service_account",
            "client_email": "probe@test-project.iam.gserviceaccount.com",
            "private_key": pem.decode(),
            "private_key_id": "k-0002",
            "token_uri": f"{url}/token",
        }
        body = {"service_account_json": key}
        assert (await plane.call("PUT", f"{PATH}/gcp", json=body))[0] == 200
        tested = (await plane.call("POST", f"{PATH}/gcp/test"))[1]
    assert tested["ok"] is True and tested["credential"] == "project", tested
    assert grants == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assert _auth(vertex)[1] == f"Bearer {PROJECT_TOKEN}"


def test_the_vertex_probe_asks_for_the_providers_first_model_unversioned() -> None:
    def config(**fields: object) -> VertexProviderConfig:
        return VertexProviderConfig.model_validate({"type": "vertex", "project": "p", **fields})

    assert probe_model(config()) == "claude-3-5-sonnet-v2"  # the default map's first entry
    assert probe_model(config(models=["claude-opus-4-1"])) == "claude-opus-4-1"
    assert probe_model(config(model_map={"house": "claude-custom@2026"})) == "claude-custom"


async def test_an_echoed_credential_never_reaches_the_answer(plane: Plane) -> None:
    """An upstream that writes the request's headers into its error page: the probe's answer
    names the failure, bounded, and holds neither the server's key nor the project's."""
    tested = (await plane.call("POST", f"{PATH}/echo/test"))[1]
    assert tested["ok"] is False and tested["status"] == 401, tested
    assert "[redacted]" in tested["error"] and len(tested["error"]) <= 300
    assert ECHOED not in tested["error"] and ECHOED[-12:] not in tested["error"]
    project_key = "sk-project-web-openai-key-fedcba9876543210"
    assert (await plane.call("PUT", f"{PATH}/echo", json={"api_key": project_key}))[0] == 200
    tested = (await plane.call("POST", f"{PATH}/echo/test"))[1]
    assert tested["credential"] == "project" and project_key[-12:] not in tested["error"]
