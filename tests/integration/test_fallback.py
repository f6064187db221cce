"""The fallback chain: primary -> secondary for every trigger, silent before the first byte and
sticky after it; terminal 4xx; exhaustion; circuit breakers. Real fakes on real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict
from typer.testing import CliRunner

from sluice.cli.main import app
from sluice.config.vk import FallbackConfig, VirtualKeyConfig
from sluice.testing import FakeAnthropic, Fault, Reply, Scenario, TextBlock

from support import Gateway, scrape, start_gateway, value

BODY = orjson.dumps(
    {
        "model": "claude-sonnet-5",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
SECONDARY_TEXT = "from the secondary"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def secondary() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(Scenario(Reply([TextBlock(SECONDARY_TEXT, chunks=1)]))) as server:
        yield server


async def _gateway(
    tmp_path: Path,
    primary_url: str,
    secondary_url: str,
    *,
    timeout_ms: int = 30_000,
    breaker: str = "",
    on: list[str] | None = None,
) -> Gateway:
    fallback: dict[str, Any] = {
        "chain": ["anthropic-primary", "secondary"],
        "timeout_ms": timeout_ms,
    }
    if on is not None:
        fallback["on"] = on
    return await start_gateway(
        tmp_path / "fb.db",
        primary_url,
        provider_yaml=(
            f"  secondary:\n    type: anthropic\n    api_key: sk-ant-secondary\n"
            f'    base_url: "{secondary_url}"\n'
        ),
        extra_yaml=breaker,
        key_config=VirtualKeyConfig(fallback=FallbackConfig.model_validate(fallback)),
    )


async def _post(gw: Gateway, body: bytes = BODY) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{gw.url}/v1/messages",
            data=body,
            headers={"x-api-key": gw.key, "content-type": "application/json"},
        ) as r,
    ):
        return r.status, CIMultiDict(r.headers), await r.read()


TRIGGERS = {
    "500": Fault(status=500),
    "529": Fault(status=529),
    "429": Fault(status=429, retry_after="7"),
    "timeout": Fault(hang_before_headers=True),
    "first_event_overloaded": Fault(error_after_events=0),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
async def test_each_trigger_switches_silently(
    tmp_path: Path, fake: FakeAnthropic, secondary: FakeAnthropic, trigger: str
) -> None:
    fake.set_default(Scenario(fault=TRIGGERS[trigger]))
    gw = await _gateway(tmp_path, fake.url, secondary.url, timeout_ms=800)
    try:
        status, headers, body = await _post(gw)
        assert status == 200, body
        assert SECONDARY_TEXT.encode() in body and b"event: error" not in body
        assert headers["x-langwatch-fallback-count"] == "1"
        assert len(fake.messages_requests()) == 1 and len(secondary.messages_requests()) == 1
        row = await gw.ledger_row(headers["request-id"])
        assert row["provider"] == "secondary" and row["attempts"] == 2 and row["status"] == 200
        first = {"500": "500", "529": "529", "429": "429", "timeout": "timeout"}
        assert row["fallback_path"] == (
            f"anthropic-primary:{first.get(trigger, '200')} > secondary:200"
            if trigger != "first_event_overloaded"
            else "anthropic-primary:200 > secondary:200"
        )
    finally:
        await gw.server.stop()


async def test_connection_refused_switches(tmp_path: Path, secondary: FakeAnthropic) -> None:
    gw = await _gateway(tmp_path, f"http://127.0.0.1:{_dead_port()}", secondary.url)
    try:
        status, headers, body = await _post(gw)
        assert status == 200 and SECONDARY_TEXT.encode() in body
        row = await gw.ledger_row(headers["request-id"])
        assert row["fallback_path"] == "anthropic-primary:network > secondary:200"
    finally:
        await gw.server.stop()


async def test_mid_stream_drop_is_sticky(
    tmp_path: Path, fake: FakeAnthropic, secondary: FakeAnthropic
) -> None:
    fake.set_default(Scenario(Reply([TextBlock("a b c d", chunks=4)]), Fault(drop_after_events=3)))
    gw = await _gateway(tmp_path, fake.url, secondary.url)
    try:
        status, headers, body = await _post(gw)
        assert status == 200
        assert body.startswith(b"event: message_start")
        assert b"event: error" in body and b"anthropic-primary" in body
        assert secondary.messages_requests() == []  # no switch after the first byte
        assert "x-langwatch-fallback-count" not in headers
        row = await gw.ledger_row(headers["request-id"])
        assert row["attempts"] == 1 and row["provider"] == "anthropic-primary"
    finally:
        await gw.server.stop()


async def test_terminal_4xx_is_returned_not_retried(
    tmp_path: Path, fake: FakeAnthropic, secondary: FakeAnthropic
) -> None:
    fake.set_default(Scenario(fault=Fault.json_error(400, "invalid_request_error", "bad field")))
    gw = await _gateway(tmp_path, fake.url, secondary.url)
    try:
        status, headers, body = await _post(gw)
        assert status == 400 and b"bad field" in body
        assert secondary.messages_requests() == []
        assert "x-should-retry" not in headers
    finally:
        await gw.server.stop()


async def test_trigger_not_listed_is_returned(
    tmp_path: Path, fake: FakeAnthropic, secondary: FakeAnthropic
) -> None:
    fake.set_default(Scenario(fault=Fault(status=429, retry_after="3")))
    gw = await _gateway(tmp_path, fake.url, secondary.url, on=["5xx"])
    try:
        status, headers, _ = await _post(gw)
        assert status == 429, headers
        assert headers["retry-after"] == "3"
        assert secondary.messages_requests() == []
    finally:
        await gw.server.stop()


async def test_every_provider_failing_returns_the_last_error_without_retry(
    tmp_path: Path, fake: FakeAnthropic, secondary: FakeAnthropic
) -> None:
    fake.set_default(Scenario(fault=Fault(status=500)))
    secondary.set_default(Scenario(fault=Fault(status=529)))
    gw = await _gateway(tmp_path, fake.url, secondary.url)
    try:
        status, headers, body = await _post(gw)
        assert status == 529  # the last upstream error, as it came
        assert orjson.loads(body)["error"]["type"] == "overloaded_error"
        assert headers["x-should-retry"] == "false"
        assert headers["x-langwatch-fallback-count"] == "1"
        row = await gw.ledger_row(headers["request-id"])
        assert row["fallback_path"] == "anthropic-primary:500 > secondary:529"
    finally:
        await gw.server.stop()


async def test_circuit_opens_skips_half_opens_and_closes(
    tmp_path: Path, fake: FakeAnthropic, secondary: FakeAnthropic
) -> None:
    fake.set_default(Scenario(fault=Fault(status=500)))
    breaker = "circuit_breaker: {failure_threshold: 2, window_s: 30, cooldown_s: 0.5}"
    gw = await _gateway(tmp_path, fake.url, secondary.url, breaker=breaker)
    try:
        for _ in range(2):
            assert (await _post(gw))[0] == 200
        assert len(fake.messages_requests()) == 2
        async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/readyz") as r:
            circuits = (await r.json())["providers"]
        assert circuits["anthropic-primary"]["state"] == "open"
        assert circuits["secondary"]["state"] == "closed"
        # The CLI shows the same, from the running gateway.
        cli = CliRunner()
        shown = await asyncio.to_thread(
            cli.invoke, app, ["providers", "status", "--url", gw.url, "--json"]
        )
        assert shown.exit_code == 0, shown.output
        assert orjson.loads(shown.stdout)["anthropic-primary"]["state"] == "open"
        table = await asyncio.to_thread(cli.invoke, app, ["providers", "status", "--url", gw.url])
        assert "anthropic-primary" in table.stdout and "open" in table.stdout
        samples = await scrape(gw)  # and so do the metrics
        assert value(samples, "sluice_circuit_state", provider="anthropic-primary") == 2
        assert value(samples, "sluice_circuit_state", provider="secondary") == 0
        fell_back = {"from_provider": "anthropic-primary", "to_provider": "secondary"}
        assert value(samples, "sluice_fallbacks_total", **fell_back, reason="5xx") == 2
        # Open: the primary is skipped without a call.
        status, headers, _ = await _post(gw)
        assert status == 200 and len(fake.messages_requests()) == 2
        row = await gw.ledger_row(headers["request-id"])
        assert row["fallback_path"] == "anthropic-primary:circuit_open > secondary:200"
        # After the cooldown one probe goes through; the primary has recovered: closed.
        await asyncio.sleep(0.6)
        fake.set_default(Scenario())
        status, headers, _ = await _post(gw)
        assert status == 200 and len(fake.messages_requests()) == 3
        assert "x-langwatch-fallback-count" not in headers
        async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/readyz") as r:
            assert (await r.json())["providers"]["anthropic-primary"]["state"] == "closed"
    finally:
        await gw.server.stop()
