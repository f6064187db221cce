"""What the tracing integration tests share: a gateway's tracing YAML, its telemetry, and
posting Claude Code's requests (captured ones, or the captured tool-loop request with other
messages) with the test key."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from sluice.telemetry import Telemetry

from support import Gateway, fixture_request

SKIP_HEADERS = {"authorization", "host", "content-length", "connection", "accept-encoding"}


def tracing_yaml(endpoint: str, extra: str = "") -> str:
    return (
        "tracing:\n  enabled: true\n"
        f"  otlp_endpoint: {endpoint}\n  flush_interval_ms: 20\n"
        "  headers: {authorization: Bearer otlp-secret-token}\n" + extra
    )


def telemetry(gw: Gateway) -> Telemetry:
    return gw.server.app.services.telemetry


async def send(gw: Gateway, fixture: str, key: str | None = None, **headers: str) -> str:
    """POST a captured Claude Code request; return the gateway's request id."""
    sent, body = fixture_request(fixture)
    return await _post(gw, "/v1/messages?beta=true", _headers(gw, sent, key, headers), data=body)


async def post_messages(
    gw: Gateway, messages: list[Any], key: str | None = None, **headers: str
) -> str:
    """The captured tool-loop request with these ``messages``; the gateway's request id."""
    sent, body = fixture_request("10-tool-loop-turn1.json")
    document = json.loads(body)
    document["messages"] = messages
    return await _post(gw, "/v1/messages", _headers(gw, sent, key, headers), json=document)


def _headers(
    gw: Gateway, sent: list[tuple[str, str]], key: str | None, extra: dict[str, str]
) -> dict[str, str]:
    out = {k: v for k, v in sent if k.lower() not in SKIP_HEADERS}
    out["Authorization"] = f"Bearer {key or gw.key}"
    out.update(extra)
    return out


async def _post(gw: Gateway, path: str, headers: dict[str, str], **body: Any) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gw.url}{path}", headers=headers, **body) as resp,
    ):
        await resp.read()
        assert resp.status == 200, await resp.text()
        return resp.headers["request-id"]
