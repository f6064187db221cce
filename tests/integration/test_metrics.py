"""Prometheus metrics: exact values after a known sequence of requests through a real gateway,
scraped from the separate metrics port and parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import generate_latest

from sluice.base.settlement import Settlement
from sluice.config.vk import VirtualKeyConfig
from sluice.errors import RateLimited
from sluice.store.budgets_repo import Budget, BudgetsRepo
from sluice.store.db import create_engine
from sluice.store.ledger import LedgerWriter
from sluice.telemetry.labels import status_label
from sluice.telemetry.metrics import Metrics
from sluice.testing import FakeAnthropic, FakeUsage, Fault, Reply, Scenario, TextBlock

from support import Gateway, parse, scrape, start_gateway, value

MODEL = "claude-haiku-4-5-20251001"
PROVIDER = "anthropic-primary"
USAGE = FakeUsage(
    input_tokens=25, output_tokens=12, cache_read_input_tokens=100, cache_creation_5m=40
)


def body(stream: bool = True) -> bytes:
    flag = b"true" if stream else b"false"
    return (
        b'{"model":"' + MODEL.encode() + b'","max_tokens":64,"stream":' + flag + b","
        b'"messages":[{"role":"user","content":"hello there"}]}'
    )


async def post(gw: Gateway, key: str, data: bytes) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gw.url}/v1/messages", data=data, headers={"x-api-key": key}) as r,
    ):
        await r.read()
        return r.status


@pytest.fixture
async def gw(fake: FakeAnthropic, tmp_path: Path) -> Gateway:
    gateway = await start_gateway(tmp_path / "sluice.db", fake.url)
    yield gateway  # type: ignore[misc]
    await gateway.server.stop()


async def add_block_budget(gw: Gateway, principal: str, secret: str) -> None:
    """A 1 micro-USD block budget, seen by the gate at its next refresh (0.5 s in tests)."""
    state = gw.server.app.services
    assert state.engine is not None and state.keys is not None
    budget = Budget(
        id="B" * 26,
        scope="principal",
        target=principal,
        window="month",
        limit_micros=1,
        on_breach="block",
        created_at=0,
        updated_at=0,
    )
    await BudgetsRepo(state.engine).insert(budget)
    key = await state.keys.identify(secret)
    for _ in range(200):
        if state.budgets.applicable(key):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("budget never loaded")


async def test_metrics_after_a_known_sequence(gw: Gateway, fake: FakeAnthropic) -> None:
    fake.set_default(Scenario(Reply([TextBlock("hi there", chunks=3)], usage=USAGE)))
    bob = await gw.mint(name="bob", principal="bob")
    await add_block_budget(gw, "bob", bob.secret)
    denied = await gw.mint(
        name="no-haiku",
        config=VirtualKeyConfig.parse({"policy_rules": {"models": {"deny": ["claude-haiku.*"]}}}),
    )
    limited = await gw.mint(name="tiny", config=VirtualKeyConfig.parse({"rate_limits": {"tpm": 1}}))

    assert [await post(gw, gw.key, body()) for _ in range(3)] == [200] * 3
    assert await post(gw, bob.secret, body()) == 402
    assert await post(gw, denied.secret, body()) == 403
    assert await post(gw, limited.secret, body()) == 429
    fake.script(Scenario(fault=Fault(status=500)))
    assert await post(gw, gw.key, body(stream=False)) == 500
    assert await post(gw, "lw_vk_live_NOTAKEY0000000000000000000000000", body()) == 401
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{gw.url}/v1/models", headers={"x-api-key": gw.key}) as r,
    ):
        assert r.status == 200

    rows = await gw.ledger_rows()
    assert len(rows) == 7  # the 401 has no row: it is counted in sluice_auth_failures_total
    m = await scrape(gw)

    def requests(status: str, provider: str = PROVIDER, model: str = MODEL) -> float:
        return value(
            m, "sluice_requests_total", route="messages", status=status, provider=provider,
            model=model, ingress="anthropic",
        )  # fmt: skip

    assert requests("200") == 3
    assert requests("402") == 1  # budgets are checked once the provider is chosen
    assert requests("500") == 1
    # Refused before routing: no provider, and no model label (it is the client's string).
    assert requests("403", "", "") == 1
    assert requests("429", "", "") == 1
    assert requests("401", "", "") == 1
    assert value(m, "sluice_auth_failures_total", reason="malformed") == 1
    assert (
        value(
            m,
            "sluice_requests_total",
            route="models",
            status="200",
            provider="",
            model="",
            ingress="anthropic",
        )
        == 1
    )
    total = sum(v for (name, _), v in m.items() if name == "sluice_requests_total")
    assert total == 9

    by_model = {"provider": PROVIDER, "model": MODEL}
    tokens = {
        kind: value(m, "sluice_tokens_total", kind=kind, **by_model)
        for kind in ("input", "output", "cache_read", "cache_write")
    }
    assert tokens == {"input": 75, "output": 36, "cache_read": 300, "cache_write": 120}
    cost_micros = sum(r["cost_micros"] or 0 for r in rows)
    assert (
        cost_micros > 0
        and [r["cost_micros"] for r in rows if r["status"] == 200] == [cost_micros // 3] * 3
    )
    assert value(m, "sluice_cost_usd_total", **by_model) == pytest.approx(cost_micros / 1e6)
    assert value(m, "sluice_unpriced_requests_total", **by_model) == 0

    # Upstream latency: the three streams and the 500 got headers; TTFT: the three streams.
    assert value(m, "sluice_upstream_latency_seconds_count", **by_model) == 4
    assert value(m, "sluice_ttft_seconds_count", **by_model) == 3
    assert value(m, "sluice_ttft_seconds_bucket", le="+Inf", **by_model) == 3
    ttft_sum = sum(r["ttft_ms"] for r in rows if r["ttft_ms"] is not None) / 1000
    assert value(m, "sluice_ttft_seconds_sum", **by_model) == pytest.approx(ttft_sum, abs=0.01)

    assert value(m, "sluice_budget_blocks_total", code="budget_exceeded") == 1
    assert value(m, "sluice_policy_blocks_total", code="model_not_allowed") == 1
    assert value(m, "sluice_rate_limit_denials_total", dimension="tpm") == 1
    assert value(m, "sluice_active_streams") == 0
    assert value(m, "sluice_ledger_queue_depth") == 0  # flushed by ledger_rows()
    assert value(m, "sluice_ledger_dropped_total") == 0
    assert len(fake.messages_requests()) == 4


async def test_metrics_live_on_their_own_port(gw: Gateway) -> None:
    state = gw.server.app.services
    assert state.metrics_server is not None and state.metrics_server.port not in (
        None,
        gw.server.port,
    )
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{gw.url}/metrics") as r:
            assert r.status == 404  # never on the gateway's own port
        async with s.get(f"http://127.0.0.1:{state.metrics_server.port}/metrics") as r:
            assert r.status == 200
            assert "sluice_active_streams 0.0" in await r.text()


async def test_metrics_disabled_and_port_in_use(fake: FakeAnthropic, tmp_path: Path) -> None:
    off = await start_gateway(tmp_path / "a.db", fake.url, extra_yaml="metrics: {enabled: false}")
    try:
        assert off.server.app.services.metrics_server is None
    finally:
        await off.server.stop()
    first = await start_gateway(tmp_path / "b.db", fake.url)
    server = first.server.app.services.metrics_server
    assert server is not None and server.port is not None
    try:
        # A taken port never stops the gateway: it serves traffic without the endpoint.
        taken = await start_gateway(
            tmp_path / "c.db", fake.url, extra_yaml=f"metrics: {{port: {server.port}}}"
        )
        try:
            assert taken.server.app.services.metrics_server is not None
            assert taken.server.app.services.metrics_server.port is None
            assert await post(taken, taken.key, body()) == 200
        finally:
            await taken.server.stop()
    finally:
        await first.server.stop()


async def test_active_streams_return_to_zero_however_they_end(
    gw: Gateway, fake: FakeAnthropic
) -> None:
    reply = Reply([TextBlock("one two three four", chunks=8)])
    fake.script(
        Scenario(reply, fault=Fault(event_delay=0.05)),
        Scenario(reply, fault=Fault(hang_after_events=3)),
    )
    async with aiohttp.ClientSession() as s:
        headers = {"x-api-key": gw.key}
        streams = [await s.post(f"{gw.url}/v1/messages", data=body(), headers=headers)]
        streams.append(await s.post(f"{gw.url}/v1/messages", data=body(), headers=headers))
        for resp in streams:
            assert resp.status == 200
            await resp.content.readline()
        assert value(await scrape(gw), "sluice_active_streams") == 2
        # One finishes normally, the other is abandoned by its client mid-stream.
        assert b"message_stop" in await streams[0].read()
        streams[1].close()
    for _ in range(100):
        if value(await scrape(gw), "sluice_active_streams") == 0:
            break
        await asyncio.sleep(0.05)
    assert value(await scrape(gw), "sluice_active_streams") == 0
    assert await fake.wait_cancelled()


def test_fallback_circuit_and_queue_callbacks() -> None:
    metrics = Metrics()
    stats = {"queue_depth": 7, "dropped": 3, "exported": 40}
    metrics.watch_export(lambda: stats)
    metrics.fallback("anthropic-primary", "bedrock-east", "5xx")
    metrics.fallback("anthropic-primary", "bedrock-east", "5xx")
    metrics.fallback("bedrock-east", "vertex", "timeout")
    metrics.circuit("anthropic-primary", "open")
    metrics.circuit("bedrock-east", "half_open")
    metrics.circuit("vertex", "closed")
    m = parse(generate_latest(metrics.registry).decode())
    fallbacks = "sluice_fallbacks_total"
    pair = {"from_provider": "anthropic-primary", "to_provider": "bedrock-east"}
    assert value(m, fallbacks, reason="5xx", **pair) == 2
    assert (
        value(m, fallbacks, from_provider="bedrock-east", to_provider="vertex", reason="timeout")
        == 1
    )
    assert value(m, "sluice_circuit_state", provider="anthropic-primary") == 2
    assert value(m, "sluice_circuit_state", provider="bedrock-east") == 1
    assert value(m, "sluice_circuit_state", provider="vertex") == 0
    assert value(m, "sluice_export_queue_depth") == 7
    assert value(m, "sluice_export_dropped_total") == 3
    assert value(m, "sluice_export_exported_total") == 40
    # Read at scrape time, not copied at registration.
    stats["queue_depth"] = 0
    metrics.circuit("anthropic-primary", "closed")
    m = parse(generate_latest(metrics.registry).decode())
    assert value(m, "sluice_export_queue_depth") == 0
    assert value(m, "sluice_circuit_state", provider="anthropic-primary") == 0
    # Two instances never share state (no global registry).
    assert "sluice_fallbacks_total{" not in generate_latest(Metrics().registry).decode()
    with pytest.raises(KeyError):
        metrics.circuit("vertex", "melted")


async def test_ledger_queue_is_read_at_scrape_time(tmp_path: Path) -> None:
    """A writer that is never started (a database that never drains): rows queue up to
    ``max_queue``, then are dropped, and the scrape shows both."""
    engine = create_engine(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        ledger = LedgerWriter(engine, max_queue=100)
        metrics = Metrics()
        metrics.watch_ledger(ledger)
        m = parse(generate_latest(metrics.registry).decode())
        assert value(m, "sluice_ledger_queue_depth") == 0
        for n in range(105):
            ledger.record(Settlement(request_id=str(n), created_at=0, endpoint="messages"))
        m = parse(generate_latest(metrics.registry).decode())
        assert value(m, "sluice_ledger_queue_depth") == 100
        assert value(m, "sluice_ledger_dropped_total") == 5
    finally:
        await engine.dispose()


async def test_every_label_value_comes_from_a_bounded_set(
    fake: FakeAnthropic, tmp_path: Path
) -> None:
    """Declared models, aliases and priced names are labels; invented names are ``other``;
    per-key series exist only when ``metrics.per_key_labels`` is on."""
    fake.set_default(Scenario(Reply([TextBlock("hi")], usage=USAGE)))
    gw = await start_gateway(tmp_path / "a.db", fake.url, extra_yaml="metrics: {port: 0}")
    try:
        aliased = await gw.mint(
            config=VirtualKeyConfig.parse({"model_aliases": {"fast": "claude-made-up-20250101"}})
        )
        models = ["claude-sonnet-5", "claude-opus-4-20250514", "claude-invented-20990101"]
        for model in models:
            data = body().replace(MODEL.encode(), model.encode())
            assert await post(gw, gw.key, data) == 200
        assert await post(gw, aliased.secret, body().replace(MODEL.encode(), b"fast")) == 200
        # The provider-prefixed form routes any name: still bounded.
        prefixed = body().replace(MODEL.encode(), f"{PROVIDER}/x1".encode())
        assert await post(gw, gw.key, prefixed) == 200
        m = await scrape(gw)
        labels = {dict(k)["model"] for (name, k) in m if name == "sluice_requests_total"}
        assert labels == {
            "claude-sonnet-5",  # declared by the provider
            "claude-opus-4-20250514",  # in the price table by that exact name
            "claude-made-up-20250101",  # an alias's target, declared by an admin
            "other",  # the invented name and the prefixed one
        }
        assert not any(name.startswith("sluice_key_") for (name, _) in m)
    finally:
        await gw.server.stop()
    # A name a provider lists at /v1/models (discovered, not declared) is known too.
    async with FakeAnthropic(models=["claude-discovered-20250101"]) as lister:
        listed = f"  lister: {{type: anthropic, api_key: k, base_url: '{lister.url}'}}"
        gw = await start_gateway(tmp_path / "c.db", fake.url, provider_yaml=listed)
        try:
            only = VirtualKeyConfig.parse({"providers_allowed": ["lister"]})
            key = (await gw.mint(config=only)).secret
            for model in (b"claude-discovered-20250101", b"claude-undiscovered-20250101"):
                assert await post(gw, key, body().replace(MODEL.encode(), model)) == 200
            m = await scrape(gw)
            labels = {dict(k)["model"] for (name, k) in m if name == "sluice_requests_total"}
            assert labels == {"claude-discovered-20250101", "other"}
        finally:
            await gw.server.stop()
    per_key = await start_gateway(
        tmp_path / "b.db", fake.url, extra_yaml="metrics: {port: 0, per_key_labels: true}"
    )
    try:
        assert await post(per_key, per_key.key, body()) == 200
        m = await scrape(per_key)
        vk_id = per_key.minted.key.id
        assert value(m, "sluice_key_requests_total", vk_id=vk_id, status="200") == 1
        assert value(m, "sluice_key_cost_usd_total", vk_id=vk_id) > 0
    finally:
        await per_key.server.stop()


def test_free_form_values_are_bounded() -> None:
    metrics = Metrics()
    metrics.fallback("a", "b", "a-reason-nobody-declared")
    metrics.refused(RateLimited("x", meta={"dimension": "made-up"}))
    m = parse(generate_latest(metrics.registry).decode())
    assert value(m, "sluice_fallbacks_total", from_provider="a", to_provider="b",
                 reason="other") == 1  # fmt: skip
    assert value(m, "sluice_rate_limit_denials_total", dimension="other") == 1
    assert status_label(200) == "200" and status_label(1234) == "other"
