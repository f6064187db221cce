"""Translating providers at the transport edge: unreachable and silent upstreams, OpenAI
error mapping (before and during a stream), and provider secrets kept out of every output."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from sluice.testing.scenarios import Fault, Reply, Scenario, TextBlock

from lanes import AWS_SECRET, MODEL, OPENAI_KEY, VERTEX_TOKEN, Lane, lane
from support import start_gateway

TRANSLATING = ("bedrock", "vertex", "openai")


async def _post(up: Lane, stream: bool) -> tuple[int, Any, bytes]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if stream:
        body["stream"] = True
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            up.gateway.url + "/v1/messages",
            data=orjson.dumps(body),
            headers={"x-api-key": up.gateway.key},
        ) as r,
    ):
        return r.status, r.headers, await r.read()


@pytest.mark.parametrize("kind", TRANSLATING)
async def test_header_timeout_is_provider_timeout(kind: str, tmp_path: Path) -> None:
    async with lane(kind, tmp_path, "header_timeout_ms: 300") as up:
        up.fake.script(Scenario(fault=Fault(hang_before_headers=True)))
        status, _, raw = await _post(up, True)
        row = (await up.gateway.ledger_rows())[-1]
    assert status == 504
    assert orjson.loads(raw)["error"]["type"] == "provider_timeout"
    assert row["error_code"] == "provider_timeout"


@pytest.mark.parametrize("kind", TRANSLATING)
async def test_connection_refused_is_provider_error(kind: str, tmp_path: Path) -> None:
    async with lane(kind, tmp_path) as up:
        await up.fake.stop()  # the port is closed now
        status, _, raw = await _post(up, False)
    assert status == 502
    error = orjson.loads(raw)["error"]
    assert error["type"] == "provider_error" and "up" in error["message"]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "overloaded_error"),
        (401, "authentication_error"),
    ],
)
async def test_openai_http_errors_become_anthropic(
    status: int, error_type: str, tmp_path: Path
) -> None:
    async with lane("openai", tmp_path) as up:
        up.fake.script(Scenario(fault=Fault(status=status, retry_after="3")))
        got, headers, raw = await _post(up, True)
    assert got == status
    assert orjson.loads(raw)["error"]["type"] == error_type
    assert headers["retry-after"] == "3"


async def test_openai_midstream_error_chunk_is_event_error(tmp_path: Path) -> None:
    async with lane("openai", tmp_path) as up:
        fault = Fault(error_after_events=3, error_type="overloaded_error", error_message="busy")
        up.fake.script(Scenario(Reply([TextBlock("a b c d e f", chunks=6)]), fault=fault))
        status, _, raw = await _post(up, True)
    assert status == 200
    names = re.findall(rb"event: (\S+)", raw)
    assert names[0] == b"message_start" and names[-1] == b"error"
    last = orjson.loads(raw.rsplit(b"data: ", 1)[1])
    assert last["error"] == {"type": "overloaded_error", "message": "busy"}


async def test_openai_request_is_translated(tmp_path: Path) -> None:
    async with lane("openai", tmp_path) as up:
        body = {
            "model": MODEL,
            "max_tokens": 32,
            "stream": True,
            "system": [
                {
                    "type": "text",
                    "text": "x-anthropic-billing-header: cc_version=2.1; cch=abc;\nBe brief.",
                },
            ],
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                up.gateway.url + "/v1/messages",
                data=orjson.dumps(body),
                headers={"x-api-key": up.gateway.key},
            ) as r,
        ):
            assert r.status == 200
            await r.read()
        sent = up.fake.messages_requests()[-1]  # type: ignore[attr-defined]
    payload = orjson.loads(sent.body)
    assert payload["model"] == "gpt-4.1"
    assert payload["stream_options"] == {"include_usage": True}
    assert payload["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent.header("authorization") == f"Bearer {OPENAI_KEY}"


async def test_azure_shape(tmp_path: Path) -> None:
    fake = FakeOpenAI(api_key=OPENAI_KEY)
    async with fake:
        yaml = (
            f'  azure:\n    type: openai\n    base_url: "{fake.url}"\n    api_key: {OPENAI_KEY}\n'
            f"    api_version: 2024-10-21\n    model_map: {{{MODEL}: my-deployment}}\n"
        )
        from sluice.config.vk import VirtualKeyConfig

        gw = await start_gateway(
            tmp_path / "s.db",
            fake.url,
            provider_yaml=yaml,
            key_config=VirtualKeyConfig(providers_allowed=["azure"]),
        )
        try:
            status, _, raw = await _post(Lane("openai", fake, gw), False)
        finally:
            await gw.server.stop()
    assert status == 200, raw
    sent = fake.completions_requests()[-1]
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.query == "api-version=2024-10-21"
    assert sent.header("api-key") == OPENAI_KEY and sent.header("authorization") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_provider_secrets_never_leak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Secrets from every provider kind stay out of reprs, config check output, logs, error
    bodies and the ledger, including when the upstream is unreachable."""
    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{_free_port()}"
    header_secret = "hdr-secret-0123456789"
    yaml = (
        "  b:\n    type: bedrock\n    access_key_id: AKIDLEAKCHECK\n"
        f"    secret_access_key: {AWS_SECRET}\n"
        f'    session_token: session-secret-0123456789\n    base_url: "{dead}"\n'
        f"  v:\n    type: vertex\n    project: p\n    access_token: {VERTEX_TOKEN}\n"
        f'    base_url: "{dead}/v1"\n'
        f"    models: [{MODEL}]\n"
        f'  o:\n    type: openai\n    api_key: {OPENAI_KEY}\n    base_url: "{dead}/v1"\n'
        f"    headers: {{x-extra-auth: {header_secret}}}\n    model_map: {{{MODEL}: gpt-4.1}}\n"
    )
    secrets = [AWS_SECRET, "session-secret-0123456789", VERTEX_TOKEN, OPENAI_KEY, header_secret]
    gw = await start_gateway(tmp_path / "s.db", dead, provider_yaml=yaml)
    outputs: list[str] = [
        repr(gw.server.app.services.config),
        str(gw.server.app.services.config.providers),
    ]
    try:
        for provider in ("b", "v", "o"):
            minted = await gw.mint(config=_only(provider))
            async with aiohttp.ClientSession() as s:
                body = {
                    "model": MODEL,
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "x"}],
                }
                async with s.post(
                    gw.url + "/v1/messages",
                    data=orjson.dumps(body),
                    headers={"x-api-key": minted.secret},
                ) as r:
                    assert r.status == 502
                    outputs.append(await r.text())
        outputs.append(str(await gw.ledger_rows()))
    finally:
        await gw.server.stop()
    outputs.append(caplog.text)
    for text in outputs:
        for secret in secrets:
            assert secret not in text


def _only(provider: str) -> Any:
    from sluice.config.vk import VirtualKeyConfig

    return VirtualKeyConfig(providers_allowed=[provider])


@pytest.mark.parametrize("kind", TRANSLATING)
async def test_silent_upstream_mid_stream_hits_the_idle_timeout(kind: str, tmp_path: Path) -> None:
    """Every lane reads its body through the same idle watch: translated (Bedrock, OpenAI)
    and passed through (Vertex)."""
    async with lane(kind, tmp_path, "stream_idle_timeout_s: 0.5") as up:
        up.fake.script(Scenario(fault=Fault(hang_after_events=3)))
        status, _, raw = await _post(up, True)
        row = (await up.gateway.ledger_rows())[-1]
    assert status == 200
    last = [e for e in raw.split(b"\n\n") if e][-1]
    assert last.startswith(b"event: error\ndata: ")
    assert orjson.loads(last.split(b"data: ", 1)[1])["error"]["code"] == "stream_idle_timeout"
    assert (row["status"], row["error_code"]) == (200, "stream_idle_timeout")


async def test_idle_timeout_counts_silence_not_a_slow_reader() -> None:
    """A reader that takes longer than the idle timeout between reads (a slow client on the
    other side of the relay) is not upstream silence: the stream is read to its end."""
    from sluice.providers.transport import upstream_chunks
    from sluice.testing import FakeAnthropic

    reply = Reply([TextBlock("slow reader", chunks=6)])
    body = b'{"model":"claude-haiku-4-5-20251001","max_tokens":8,"stream":true,"messages":[]}'
    async with (
        FakeAnthropic(Scenario(reply, Fault(event_delay=0.02))) as fake,
        aiohttp.ClientSession() as session,
        session.post(fake.url + "/v1/messages", data=body) as resp,
    ):
        got = b""
        async for chunk in upstream_chunks(resp, "up", 0.2):
            got += chunk
            await asyncio.sleep(0.3)
    assert got.endswith(b'data: {"type":"message_stop"}\n\n')
