"""The raw lane: bytes, headers and usage through a real gateway to a real fake upstream."""

from __future__ import annotations

import asyncio
import hashlib
import itertools

import aiohttp
import orjson

from sluice.testing import FakeAnthropic, FakeUsage, Reply, Scenario, TextBlock, scenario_by_name

from support import PROVIDER_KEY, Gateway

BODY = (
    b'{"model":"claude-haiku-4-5-20251001","max_tokens":256,  "stream":true,'
    b'"system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],'
    b'"messages":[{"role":"user","content":[{"type":"text","text":"say hi \\u00e9",'
    b'"cache_control":{"type":"ephemeral"}}]}],"unknown_future_field":{"keep":[1,2.50,true]}}'
)


def client_headers(key: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {key}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": (
            "claude-code-20250219,interleaved-thinking-2025-05-14,context-1m-2025-08-07"
        ),
        "content-type": "application/json",
        "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
        "x-app": "cli",
        "x-claude-code-session-id": "0b6f4a2e-5d4c-4c1e-9a43-1f2b3c4d5e6f",
        "x-stainless-retry-count": "0",
        "x-stainless-timeout": "600",
        "anthropic-dangerous-direct-browser-access": "true",
        "x-langwatch-agent": "not-forwarded",
        "cookie": "session=secret",
    }


async def direct_bytes(fake: FakeAnthropic, body: bytes) -> bytes:
    async with aiohttp.ClientSession() as s, s.post(f"{fake.url}/v1/messages", data=body) as r:
        return await r.read()


async def test_stream_bytes_headers_and_ledger(gateway: Gateway, fake: FakeAnthropic) -> None:
    usage = FakeUsage(
        input_tokens=40,
        output_tokens=9,
        cache_read_input_tokens=1000,
        cache_creation_5m=300,
        cache_creation_1h=200,
    )
    fake.set_default(Scenario(Reply([TextBlock("Hi there, friend.", chunks=4)], usage=usage)))
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{gateway.url}/v1/messages?beta=true", data=BODY, headers=client_headers(gateway.key)
        ) as r,
    ):
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        rid = r.headers["request-id"]
        got = await r.read()
    assert rid.startswith("req_")
    assert r.headers["x-request-id"] == rid == r.headers["x-langwatch-request-id"]
    assert r.headers["upstream-request-id"].startswith("req_fake_")
    assert got.startswith(b"event: message_start\n") and got.endswith(
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    upstream_req = fake.messages_requests()[-1]
    # Upstream got the body bytes unchanged, the query kept, the betas as sent, our key only.
    assert upstream_req.body == BODY
    assert upstream_req.query == "beta=true"
    sent = client_headers(gateway.key)
    assert upstream_req.header("anthropic-beta") == sent["anthropic-beta"]
    assert upstream_req.header("anthropic-version") == "2023-06-01"
    assert upstream_req.header("x-api-key") == PROVIDER_KEY
    assert upstream_req.header("authorization") is None
    assert upstream_req.header("cookie") is None
    assert upstream_req.header("x-langwatch-agent") is None
    for name in (
        "user-agent",
        "x-app",
        "x-claude-code-session-id",
        "x-stainless-retry-count",
        "x-stainless-timeout",
        "anthropic-dangerous-direct-browser-access",
    ):
        assert upstream_req.header(name) == sent[name], name
    assert all(gateway.key not in value for _, value in upstream_req.headers)
    row = await gateway.ledger_row(rid)
    assert row["vk_id"] == gateway.minted.key.id
    assert (row["principal"], row["project"], row["team"]) == ("alice", "web", "core")
    assert row["status"] == 200 and row["streaming"] is True
    assert row["model_requested"] == row["model_sent"] == "claude-haiku-4-5-20251001"
    assert row["provider"] == "anthropic-primary"
    assert row["session_id"] == sent["x-claude-code-session-id"]
    assert row["stop_reason"] == "end_turn"
    assert (row["input_tokens"], row["output_tokens"]) == (40, 9)
    assert row["cache_read_tokens"] == 1000
    assert row["cache_creation_tokens"] == 500
    assert (row["cache_creation_5m_tokens"], row["cache_creation_1h_tokens"]) == (300, 200)
    assert row["upstream_request_id"] == r.headers["upstream-request-id"]
    assert row["ttft_ms"] is not None and row["duration_ms"] >= row["ttft_ms"]
    assert row["client_disconnected"] is False and row["error_code"] is None
    # haiku-4-5 per MTok: $1 in, $5 out, $0.10 read, $1.25 5m write, $2 1h write
    assert row["cost_micros"] == 40 * 1 + 9 * 5 + 1000 * 0.1 + 300 * 1.25 + 200 * 2


async def test_unpriced_model_cost_is_unknown_not_zero(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    body = BODY.replace(b"claude-haiku-4-5-20251001", b"claude-unreleased-20991231")
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gateway.url}/v1/messages", data=body, headers=client_headers(gateway.key)) as r,
    ):
        assert r.status == 200
        await r.read()
        rid = r.headers["request-id"]
    row = await gateway.ledger_row(rid)
    assert row["input_tokens"] > 0 and row["cost_micros"] is None


async def test_stream_is_byte_identical_to_direct(gateway: Gateway, fake: FakeAnthropic) -> None:
    """Same scenario with a pinned message id: gateway bytes == direct bytes, sha256-equal."""
    for name in ("text", "tool_bash", "thinking", "cache"):
        scenario = scenario_by_name(name)
        scenario = Scenario(
            Reply(scenario.reply.blocks, usage=scenario.reply.usage, message_id="msg_pinned"),
            scenario.fault,
        )
        fake.set_default(scenario)
        direct = await direct_bytes(fake, BODY)
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{gateway.url}/v1/messages", data=BODY, headers=client_headers(gateway.key)
            ) as r,
        ):
            via = await r.read()
        # Tool ids carry the fake's request counter; normalise only that.
        direct_n = _strip_counters(direct)
        via_n = _strip_counters(via)
        assert hashlib.sha256(via_n).digest() == hashlib.sha256(direct_n).digest(), name


def _strip_counters(data: bytes) -> bytes:
    import re

    return re.sub(rb"toolu_fake_\d+_", b"toolu_fake_N_", data)


async def test_non_streaming_passthrough(gateway: Gateway, fake: FakeAnthropic) -> None:
    fake.set_default(scenario_by_name("tool_bash"))
    body = BODY.replace(b'"stream":true,', b"")
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gateway.url}/v1/messages", data=body, headers=client_headers(gateway.key)) as r,
    ):
        assert r.status == 200
        got = await r.read()
        rid = r.headers["request-id"]
    message = orjson.loads(got)
    assert message["type"] == "message"
    assert fake.messages_requests()[-1].body == body
    row = await gateway.ledger_row(rid)
    assert row["streaming"] is False
    assert row["stop_reason"] == "tool_use"
    assert row["input_tokens"] == message["usage"]["input_tokens"]
    assert row["output_tokens"] == message["usage"]["output_tokens"]


async def test_count_tokens_forwarded(gateway: Gateway, fake: FakeAnthropic) -> None:
    body = b'{"model":"claude-opus-4-8","messages":[{"role":"user","content":"hello"}]}'
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{gateway.url}/v1/messages/count_tokens?beta=true",
            data=body,
            headers=client_headers(gateway.key),
        ) as r,
    ):
        assert r.status == 200
        assert orjson.loads(await r.read()) == {"input_tokens": max(1, len(body) // 4)}
        rid = r.headers["request-id"]
    upstream = fake.requests[-1]
    assert upstream.path == "/v1/messages/count_tokens"
    assert upstream.body == body
    assert upstream.header("x-api-key") == PROVIDER_KEY
    assert (await gateway.ledger_row(rid))["endpoint"] == "count_tokens"


async def test_head_root_health_ready(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.head(f"{gateway.url}/") as r:
            assert r.status == 200
            assert r.headers["request-id"].startswith("req_")
        async with s.get(f"{gateway.url}/") as r:
            assert r.status == 200
        async with s.get(f"{gateway.url}/healthz") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "ok"
        async with s.get(f"{gateway.url}/readyz") as r:
            assert r.status == 200
            assert (await r.json())["database"] is True
        async with s.get(f"{gateway.url}/nope") as r:
            assert r.status == 404
            assert (await r.json())["error"]["type"] == "not_found_error"


async def test_query_is_ignored_for_routing(gateway: Gateway, fake: FakeAnthropic) -> None:
    async with aiohttp.ClientSession() as s:
        for query in ("?beta=true", "?beta=true&x=1", ""):
            async with s.post(
                f"{gateway.url}/v1/messages{query}", data=BODY, headers=client_headers(gateway.key)
            ) as r:
                assert r.status == 200
                await r.read()
    assert len(fake.messages_requests()) == 3


async def test_events_flow_as_they_arrive(gateway: Gateway, fake: FakeAnthropic) -> None:
    """No buffering: each event reaches the client while the upstream is still sending."""
    from sluice.testing import Fault

    fake.set_default(
        Scenario(
            Reply([TextBlock("one two three four", chunks=4)], pings=False), Fault(event_delay=0.15)
        )
    )
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[float, bytes]] = []
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gateway.url}/v1/messages", data=BODY, headers=client_headers(gateway.key)) as r,
    ):
        buf = b""
        async for chunk in r.content.iter_any():
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                arrivals.append((loop.time(), ev.split(b"\n", 1)[0]))
    names = [name for _, name in arrivals]
    assert names[0] == b"event: message_start" and names[-1] == b"event: message_stop"
    assert b"event: ping" not in names  # nothing injected
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    # Upstream waits 0.15 s between events; the client sees the same spacing, event by event.
    assert len(gaps) >= 8 and sum(g > 0.1 for g in gaps) >= len(gaps) - 1
