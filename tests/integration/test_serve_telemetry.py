"""`sluice serve` as a real process: no secret in any log line at debug level, the access line's
fields, and the metrics endpoint (its banner, and one port per worker)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from test_serve import cli, free_port, serving

from sluice.testing import FakeAnthropic

from services import ensure_redis
from support import serve_app

PROVIDER_KEY = "sk-ant-api03-provider-secret-Zx9Qw8Er7Ty6Ui5Op4"
ECHO_PROVIDER_KEY = "plain-provider-token-4f1e9c2b7a6d"  # not key-shaped: no pattern saves it
ACCESS_FIELDS = {
    "request_id",
    "key_prefix",
    "principal",
    "model",
    "provider",
    "status",
    "error_code",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "duration_ms",
    "upstream_latency_ms",
    "ttft_ms",
    "attempts",
}


def body(model: str) -> bytes:
    return (
        b'{"model":"%s","max_tokens":64,"stream":true,'
        b'"messages":[{"role":"user","content":"hi"}]}' % model.encode()
    )


@pytest.fixture
async def echo_upstream() -> AsyncIterator[str]:
    """An upstream that fails with every request header echoed back, secrets first."""

    async def handle(request: web.Request) -> web.Response:
        first = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() in ("x-api-key", "authorization")
        ]
        echoed = "\n".join(f"{k}: {v}" for k, v in [*first, *request.headers.items()])
        return web.Response(
            status=500, text=f"<html><pre>{echoed}</pre></html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serve_app(app) as url:
        yield url


def write_config(
    tmp_path: Path, fake_url: str, echo_url: str, metrics_port: int, level: str = "debug"
) -> Path:
    config = tmp_path / "sluice.yaml"
    config.write_text(
        f"server: {{log_level: {level}}}\n"
        f"database: sqlite:///{tmp_path / 's.db'}\nsecret_key: s3cret-hmac-key-material\n"
        f"ledger: {{flush_interval_ms: 20}}\n"
        f"metrics: {{port: {metrics_port}}}\n"
        "providers:\n"
        f"  anthropic-primary: {{type: anthropic, api_key: {PROVIDER_KEY}, base_url: '{fake_url}',"
        " models: [claude-haiku-4-5-20251001]}\n"
        f"  echo: {{type: anthropic, api_key: {ECHO_PROVIDER_KEY}, base_url: '{echo_url}',"
        " models: [claude-sonnet-5]}\n"
    )
    return config


async def test_no_secret_in_any_log_line(
    tmp_path: Path, fake: FakeAnthropic, echo_upstream: str
) -> None:
    metrics_port = free_port()
    config = write_config(tmp_path, fake.url, echo_upstream, metrics_port)
    minted = json.loads(
        await cli(tmp_path, "keys", "create", "--name", "al", "--principal", "alice", "--json",
                  "--config", str(config))
    )  # fmt: skip
    key, prefix = minted["key"], minted["display_prefix"]
    wrong_shaped = key[:-6] + "AAAAAA"  # a well-formed key that is not on file
    wrong_plain = "definitely-not-a-key-7c3e1b9d5f"
    async with serving(tmp_path, "--config", str(config)) as (url, proc):
        async with aiohttp.ClientSession() as s:
            results = []
            for headers, model in [
                ({"x-api-key": key}, "claude-haiku-4-5-20251001"),
                ({"authorization": f"Bearer {key}"}, "claude-haiku-4-5-20251001"),
                ({"x-api-key": wrong_shaped}, "claude-haiku-4-5-20251001"),
                ({"authorization": f"Bearer {wrong_plain}"}, "claude-haiku-4-5-20251001"),
                ({"x-api-key": key}, "claude-sonnet-5"),  # the echoing upstream
            ]:
                async with s.post(f"{url}/v1/messages", data=body(model), headers=headers) as r:
                    results.append((r.status, await r.text()))
            async with s.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                assert r.status == 200
                scraped = await r.text()
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        output = (await proc.stdout.read()).decode() + (await proc.stderr.read()).decode()

    assert [status for status, _ in results] == [200, 200, 401, 401, 500]
    # The upstreams really did receive the providers' credentials.
    assert len(fake.messages_requests()) == 2
    assert dict(fake.messages_requests()[0].headers)["x-api-key"] == PROVIDER_KEY
    # The echoed credential reaches neither the logs nor the client's error message.
    assert "x-api-key: [redacted]" in results[4][1]
    for secret in (key, PROVIDER_KEY, ECHO_PROVIDER_KEY):
        assert all(secret not in text for _, text in results)
    for secret in (key, PROVIDER_KEY, ECHO_PROVIDER_KEY, wrong_shaped, wrong_plain):
        assert secret not in output
    assert key[len(prefix) :] not in output  # no secret part, even cut from its prefix
    assert f"Metrics on http://127.0.0.1:{metrics_port}/metrics" in output

    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line["level"] == "debug" for line in lines)  # debug really was on
    access = [line for line in lines if line["logger"] == "sluice.access"]
    assert len(access) == 5
    for line in access:
        assert line.keys() >= ACCESS_FIELDS
    ok = access[0]
    assert (ok["key_prefix"], ok["principal"], ok["provider"], ok["status"]) == (
        prefix, "alice", "anthropic-primary", 200,
    )  # fmt: skip
    assert (ok["input_tokens"], ok["output_tokens"], ok["attempts"]) == (25, 12, 1)
    assert ok["cost_usd"] > 0 and ok["ttft_ms"] is not None and ok["upstream_latency_ms"] >= 0
    assert [line["status"] for line in access] == [200, 200, 401, 401, 500]
    assert [line["key_prefix"] for line in access] == [prefix, prefix, None, None, prefix]
    assert access[4]["provider"] == "echo" and access[4]["error_code"] == "provider_error"

    samples = {
        (s.name, s.labels.get("status")): s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name == "sluice_requests_total"
    }
    assert samples[("sluice_requests_total", "200")] == 2
    assert samples[("sluice_requests_total", "401")] == 2


async def test_each_worker_serves_metrics_on_its_own_port(
    tmp_path: Path, fake: FakeAnthropic, echo_upstream: str
) -> None:
    base = two_free_ports()
    config = write_config(tmp_path, fake.url, echo_upstream, base, "info")
    ensure_redis()  # several workers need shared counters
    config.write_text(config.read_text() + "redis: redis://127.0.0.1:6379/11\n")
    key = json.loads(
        await cli(tmp_path, "keys", "create", "--name", "w", "--json", "--config", str(config))
    )["key"]
    async with serving(tmp_path, "--config", str(config), "--workers", "2") as (url, proc):
        async with aiohttp.ClientSession() as s:
            # Both workers are up once both metrics ports answer (a loaded machine may take
            # seconds to start the second).
            assert [await scrape_total(s, port) for port in (base, base + 1)] == [0, 0]
            for _ in range(12):
                async with s.post(
                    f"{url}/v1/messages",
                    data=body("claude-haiku-4-5-20251001"),
                    headers={"x-api-key": key},
                ) as r:
                    assert r.status == 200
                    await r.read()
            totals = [await scrape_total(s, port) for port in (base, base + 1)]
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        banner = (await proc.stdout.read()).decode()
        logs = (await proc.stderr.read()).decode()
    assert sum(totals) == 12
    assert f"Metrics on http://127.0.0.1:{base}..{base + 1}/metrics" in banner
    for port in (base, base + 1):
        assert f"metrics served at http://127.0.0.1:{port}/metrics" in logs


async def scrape_total(session: aiohttp.ClientSession, port: int) -> float:
    """The sum of sluice_requests_total on one worker's port, waiting for it to be served."""
    for _ in range(600):
        try:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
            break
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"no metrics on port {port}")
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sluice_requests_total"
    )


def two_free_ports() -> int:
    """A port p with p and p + 1 free (the span of a two-worker server)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")
