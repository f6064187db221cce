"""The fallback chain: primary -> secondary for every trigger, silent before the first byte and
sticky after it; terminal 4xx; exhaustion; circuit breakers. Real fakes on real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
from sluice.testing.fake_bedrock import bedrock_error
from sluice.testing.fake_server import FakeServer

from lanes import MODEL, make_fake, provider_yaml
from support import Gateway, scrape, start_gateway, value

BODY = orjson.dumps(
    {
        "model": MODEL,
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


@dataclass
class Secondary:
    kind: str
    fake: FakeServer

    def calls(self) -> int:
        return len(self.fake.messages_requests())  # type: ignore[attr-defined]


@pytest.fixture(params=["bedrock"])
async def secondary(request: pytest.FixtureRequest) -> AsyncIterator[Secondary]:
    """The chain's second provider (id ``up``): Bedrock unless a test asks for another kind."""
    server = make_fake(request.param)
    server.set_default(Scenario(Reply([TextBlock(SECONDARY_TEXT, chunks=1)])))
    async with server:
        yield Secondary(request.param, server)


async def _gateway(
    tmp_path: Path,
    primary_url: str,
    secondary: Secondary,
    *,
    timeout_ms: int = 30_000,
    breaker: str = "",
    on: list[str] | None = None,
    chain: list[str] | None = None,
    allowed: list[str] | None = None,
) -> Gateway:
    fallback: dict[str, Any] = {
        "chain": chain if chain is not None else ["anthropic-primary", "up"],
        "timeout_ms": timeout_ms,
    }
    if on is not None:
        fallback["on"] = on
    return await start_gateway(
        tmp_path / "fb.db",
        primary_url,
        provider_yaml=provider_yaml(secondary.kind, secondary.fake),
        extra_yaml=breaker,
        key_config=VirtualKeyConfig(
            fallback=FallbackConfig.model_validate(fallback), providers_allowed=allowed
        ),
    )


async def _post(
    gw: Gateway, body: bytes = BODY, path: str = "/v1/messages"
) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{gw.url}{path}",
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


@pytest.mark.parametrize("secondary", ["bedrock", "anthropic", "vertex", "openai"], indirect=True)
@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
async def test_each_trigger_switches_silently(
    tmp_path: Path, fake: FakeAnthropic, secondary: Secondary, trigger: str
) -> None:
    fake.set_default(Scenario(fault=TRIGGERS[trigger]))
    gw = await _gateway(tmp_path, fake.url, secondary, timeout_ms=800)
    try:
        status, headers, body = await _post(gw)
        assert status == 200, body
        assert SECONDARY_TEXT.encode() in body and b"event: error" not in body
        assert headers["x-langwatch-fallback-count"] == "1"
        assert len(fake.messages_requests()) == 1 and secondary.calls() == 1
        row = await gw.ledger_row(headers["request-id"])
        assert row["provider"] == "up" and row["attempts"] == 2 and row["status"] == 200
        first = {"500": "500", "529": "529", "429": "429", "timeout": "timeout"}
        assert row["fallback_path"] == (
            f"anthropic-primary:{first.get(trigger, '200')} > up:200"
            if trigger != "first_event_overloaded"
            else "anthropic-primary:200 > up:200"
        )
    finally:
        await gw.server.stop()


async def test_connection_refused_switches(tmp_path: Path, secondary: Secondary) -> None:
    gw = await _gateway(tmp_path, f"http://127.0.0.1:{_dead_port()}", secondary)
    try:
        status, headers, body = await _post(gw)
        assert status == 200 and SECONDARY_TEXT.encode() in body
        row = await gw.ledger_row(headers["request-id"])
        assert row["fallback_path"] == "anthropic-primary:network > up:200"
    finally:
        await gw.server.stop()


async def test_mid_stream_drop_is_sticky(
    tmp_path: Path, fake: FakeAnthropic, secondary: Secondary
) -> None:
    fake.set_default(Scenario(Reply([TextBlock("a b c d", chunks=4)]), Fault(drop_after_events=3)))
    gw = await _gateway(tmp_path, fake.url, secondary)
    try:
        status, headers, body = await _post(gw)
        assert status == 200
        assert body.startswith(b"event: message_start")
        assert b"event: error" in body and b"anthropic-primary" in body
        assert secondary.calls() == 0  # no switch after the first byte
        assert "x-langwatch-fallback-count" not in headers
        row = await gw.ledger_row(headers["request-id"])
        assert row["attempts"] == 1 and row["provider"] == "anthropic-primary"
    finally:
        await gw.server.stop()


async def test_terminal_4xx_is_returned_not_retried(
    tmp_path: Path, fake: FakeAnthropic, secondary: Secondary
) -> None:
    fake.set_default(Scenario(fault=Fault.json_error(400, "invalid_request_error", "bad field")))
    gw = await _gateway(tmp_path, fake.url, secondary)
    try:
        status, headers, body = await _post(gw)
        assert status == 400 and b"bad field" in body
        assert secondary.calls() == 0
        assert "x-should-retry" not in headers
    finally:
        await gw.server.stop()


async def test_trigger_not_listed_is_returned(
    tmp_path: Path, fake: FakeAnthropic, secondary: Secondary
) -> None:
    fake.set_default(Scenario(fault=Fault(status=429, retry_after="3")))
    gw = await _gateway(tmp_path, fake.url, secondary, on=["5xx"])
    try:
        status, headers, _ = await _post(gw)
        assert status == 429, headers
        assert headers["retry-after"] == "3"
        assert secondary.calls() == 0
    finally:
        await gw.server.stop()


async def test_every_provider_failing_returns_the_last_error_without_retry(
    tmp_path: Path, fake: FakeAnthropic, secondary: Secondary
) -> None:
    fake.set_default(Scenario(fault=Fault(status=500)))
    # Bedrock's ServiceUnavailableException (503), which Sluice answers as Anthropic's 529.
    secondary.fake.set_default(Scenario(fault=bedrock_error(503)))
    gw = await _gateway(tmp_path, fake.url, secondary)
    try:
        status, headers, body = await _post(gw)
        assert status == 529  # the last upstream error, as it came
        assert orjson.loads(body)["error"]["type"] == "overloaded_error"
        assert headers["x-should-retry"] == "false"
        assert headers["x-langwatch-fallback-count"] == "1"
        row = await gw.ledger_row(headers["request-id"])
        assert row["fallback_path"] == "anthropic-primary:500 > up:529"
    finally:
        await gw.server.stop()


async def test_circuit_opens_skips_half_opens_and_closes(
    tmp_path: Path, fake: FakeAnthropic, secondary: Secondary
) -> None:
    fake.set_default(Scenario(fault=Fault(status=500)))
    breaker = "circuit_breaker: {failure_threshold: 2, window_s: 30, cooldown_s: 0.5}"
    gw = await _gateway(tmp_path, fake.url, secondary, breaker=breaker)
    try:
        for _ in range(2):
            assert (await _post(gw))[0] == 200
        assert len(fake.messages_requests()) == 2
        async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/readyz") as r:
            circuits = (await r.json())["providers"]
        assert circuits["anthropic-primary"]["state"] == "open"
        assert circuits["up"]["state"] == "closed"
        # The CLI shows the same, from the running gateway.
        cli = CliRunner()
        shown = await asyncio.to_thread(
            cli.invoke, app, ["providers", "status", "--gateway", gw.url, "--json"]
        )
        assert shown.exit_code == 0, shown.output
        assert orjson.loads(shown.stdout)["anthropic-primary"]["state"] == "open"
        table = await asyncio.to_thread(
            cli.invoke, app, ["providers", "status", "--gateway", gw.url]
        )
        assert "anthropic-primary" in table.stdout and "open" in table.stdout
        samples = await scrape(gw)  # and so do the metrics
        assert value(samples, "sluice_circuit_state", provider="anthropic-primary") == 2
        assert value(samples, "sluice_circuit_state", provider="up") == 0
        fell_back = {"from_provider": "anthropic-primary", "to_provider": "up"}
        assert value(samples, "sluice_fallbacks_total", **fell_back, reason="5xx") == 2
        # Open: the primary is skipped without a call.
        status, headers, _ = await _post(gw)
        assert status == 200 and len(fake.messages_requests()) == 2
        row = await gw.ledger_row(headers["request-id"])
        assert row["fallback_path"] == "anthropic-primary:circuit_open > up:200"
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


@pytest.mark.parametrize("secondary", ["openai"], indirect=True)
async def test_a_provider_that_cannot_express_the_request_is_skipped(
    tmp_path: Path, fake: FakeAnthropic, secondary: Secondary
) -> None:
    """Signed thinking can't go to an OpenAI upstream: the chain skips it (nothing is sent)
    instead of answering 400, and the next provider serves."""
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig-abc"}
    body = orjson.dumps(
        {
            "model": MODEL,
            "max_tokens": 100,
            "stream": True,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [thinking, {"type": "text", "text": "yes"}]},
                {"role": "user", "content": "go on"},
            ],
        }
    )
    gw = await _gateway(tmp_path, fake.url, secondary, chain=["up", "anthropic-primary"])
    try:
        status, headers, _ = await _post(gw, body)
        assert status == 200 and secondary.calls() == 0
        row = await gw.ledger_row(headers["request-id"])
        assert row["fallback_path"] == "up:unsupported > anthropic-primary:200"
        assert row["attempts"] == 1 and "x-langwatch-fallback-count" not in headers
    finally:
        await gw.server.stop()


COUNT_BODY = orjson.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "count these words " * 50}]}
)


async def test_count_tokens_falls_back_to_a_provider_that_can_count(
    tmp_path: Path, secondary: Secondary
) -> None:
    """Bedrock (the chain's first provider here) can't count; Anthropic serves the same model
    and can, so it counts: an exact number, not an estimate."""
    async with FakeAnthropic(count_tokens_value=321) as counter:
        gw = await _gateway(tmp_path, counter.url, secondary, chain=["up", "anthropic-primary"])
        try:
            status, headers, body = await _post(gw, COUNT_BODY, "/v1/messages/count_tokens")
            assert status == 200 and orjson.loads(body) == {"input_tokens": 321}
            assert "x-langwatch-token-count" not in headers
            row = await gw.ledger_row(headers["request-id"])
            assert row["provider"] == "anthropic-primary" and row["endpoint"] == "count_tokens"
        finally:
            await gw.server.stop()


async def test_count_tokens_is_a_marked_estimate_when_no_provider_can_count(
    tmp_path: Path, fake: FakeAnthropic, secondary: Secondary
) -> None:
    gw = await _gateway(tmp_path, fake.url, secondary, chain=["up"], allowed=["up"])
    try:
        status, headers, body = await _post(gw, COUNT_BODY, "/v1/messages/count_tokens")
        assert status == 200 and headers["x-langwatch-token-count"] == "estimated"
        estimate = orjson.loads(body)["input_tokens"]
        # Conservative (3 bytes a token), so never below the real count (~4 bytes a token).
        assert estimate == -(-len(COUNT_BODY) // 3)
        assert secondary.calls() == 0 and fake.requests == []
    finally:
        await gw.server.stop()


ONE_BODY = orjson.dumps(
    {
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


async def _circuit(gw: Gateway) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/readyz") as r:
        return str((await r.json())["providers"]["anthropic-primary"]["state"])


async def test_single_provider_terminal_4xx_never_judges_the_circuit(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    """No chain (one provider, never refused): the breaker judges each attempt as a chain's
    attempt is judged (docs/fallback.md: a terminal 4xx never counts). A 400 does not close an
    open circuit, nor does a half-open probe answered 400; the next success does."""
    breaker = "circuit_breaker: {failure_threshold: 2, window_s: 30, cooldown_s: 0.3}"
    gw = await start_gateway(tmp_path / "one.db", fake.url, extra_yaml=breaker)
    bad = Scenario(fault=Fault.json_error(400, "invalid_request_error", "bad field"))
    try:
        fake.script(Scenario(fault=Fault(status=529)), Scenario(fault=Fault(status=529)))
        for _ in range(2):
            assert (await _post(gw, ONE_BODY))[0] == 529
        assert await _circuit(gw) == "open"
        fake.script(bad)
        status, _, body = await _post(gw, ONE_BODY)
        assert status == 400 and b"bad field" in body  # never refused: nowhere else to go
        assert await _circuit(gw) == "open"
        await asyncio.sleep(0.4)  # past the cooldown
        fake.script(bad)
        assert (await _post(gw, ONE_BODY))[0] == 400
        assert await _circuit(gw) != "closed"
        assert (await _post(gw, ONE_BODY))[0] == 200
        assert await _circuit(gw) == "closed"
    finally:
        await gw.server.stop()


async def test_single_provider_failures_open_the_circuit_and_4xx_do_not(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    """Many 4xx between two failures neither reset nor add to the failure count."""
    breaker = "circuit_breaker: {failure_threshold: 3, window_s: 30, cooldown_s: 30}"
    gw = await start_gateway(tmp_path / "one.db", fake.url, extra_yaml=breaker)
    try:
        fake.script(
            Scenario(fault=Fault(status=500)),
            *[Scenario(fault=Fault.json_error(404, "not_found_error", "no")) for _ in range(5)],
            Scenario(fault=Fault(status=500)),
        )
        statuses = [(await _post(gw, ONE_BODY))[0] for _ in range(7)]
        assert statuses == [500, 404, 404, 404, 404, 404, 500]
        assert await _circuit(gw) == "closed"  # 2 failures of 3
        fake.script(Scenario(fault=Fault(status=500)))
        assert (await _post(gw, ONE_BODY))[0] == 500
        assert await _circuit(gw) == "open"
    finally:
        await gw.server.stop()
