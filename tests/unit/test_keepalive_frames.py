"""A ping never lands inside an event, even when the upstream pauses mid-event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from sluice.core.context import RequestContext
from sluice.core.keepalive import PING
from sluice.core.relay import relay
from sluice.providers.base import UpstreamResponse

START = b'event: message_start\ndata: {"type":"message_start","message":{"id":"m"}}\n\n'
DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n'


async def test_pings_wait_for_the_event_the_upstream_is_half_way_through() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield START
        yield DELTA[:20]  # half an event, then a long silence
        await asyncio.sleep(0.35)
        yield DELTA[20:]

    async def read_all() -> bytes:
        return b""

    upstream = UpstreamResponse(200, [], "text/event-stream", body(), read_all, lambda _a: None)
    sent: list[bytes] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    ctx = RequestContext("r", "messages", "/v1/messages", "", [], 0.0, 0)
    await relay(ctx, upstream, send, None, keepalive_s=0.1)
    stream = b"".join(sent)
    assert stream.startswith(START)
    middle = stream[len(START) : stream.index(DELTA)]
    assert middle and middle == PING * middle.count(PING)  # pings, whole, before the delta
    assert stream.endswith(DELTA)
