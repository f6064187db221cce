"""Keep-alive pings on a silent stream (server.keepalive_s): Claude Code aborts after 300 s
without a byte; a started stream whose upstream says nothing gets `event: ping` frames, only
between complete events, never before the first one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sluice.testing import FakeAnthropic, Fault, Scenario

from support import Gateway, start_gateway

BODY = {
    "model": "claude-opus-4-8",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "think hard"}],
}
PING = b'event: ping\ndata: {"type": "ping"}\n\n'


@pytest.fixture
async def pinging(tmp_path: Path, fake: FakeAnthropic) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path / "ka.db", fake.url, server_yaml="keepalive_s: 0.2")
    try:
        yield gw
    finally:
        await gw.server.stop()


async def _read_for(gw: Gateway, seconds: float) -> bytes:
    """The stream's bytes as received within ``seconds`` (then the client leaves)."""
    got = bytearray()
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gw.url}/v1/messages", json=BODY, headers={"x-api-key": gw.key}) as r,
    ):
        assert r.status == 200
        try:
            async with asyncio.timeout(seconds):
                async for chunk in r.content.iter_any():
                    got += chunk
        except TimeoutError:
            pass
    return bytes(got)


async def test_a_silent_upstream_gets_pings_between_whole_events(
    pinging: Gateway, fake: FakeAnthropic
) -> None:
    fake.set_default(Scenario(fault=Fault(hang_after_events=1)))  # message_start, then nothing
    got = await _read_for(pinging, 1.1)
    first, _, rest = got.partition(b"\n\n")
    assert first.startswith(b"event: message_start")
    pings = rest.count(PING)
    assert 3 <= pings <= 6, got
    assert rest == PING * pings  # whole frames only, nothing else in between
    json.loads(first.split(b"data: ", 1)[1])  # the relayed event is intact


async def test_no_ping_before_the_first_event_nor_in_a_lively_stream(
    pinging: Gateway, fake: FakeAnthropic
) -> None:
    # 0.5 s before the first byte (longer than the 0.2 s interval), then 50 ms between events.
    fake.set_default(Scenario(fault=Fault(first_byte_delay=0.5, event_delay=0.05)))
    got = await _read_for(pinging, 3.0)
    assert got.startswith(b"event: message_start")
    assert PING not in got
    assert got.rstrip().endswith(b'data: {"type":"message_stop"}')
