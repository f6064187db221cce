"""A response's head leaves with its body's first bytes, in one write (``server/head_writer.py``),
and nothing that used to work waits on it: interim ``100 Continue``, HEAD responses (no body
write), pipelined requests, a slow first body chunk, and a connection that closes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from sluice.config.models import ServerConfig
from sluice.server.edge_limits import EdgeLimits
from sluice.server.head_writer import HeadWriter
from sluice.server.http_protocol import SluiceHttpProtocol
from sluice.testing.transport import RecordingTransport

from support import Gateway

BODY = (
    b'{"model":"claude-haiku-4-5-20251001","max_tokens":5,'
    b'"messages":[{"role":"user","content":"hi"}]}'
)


def _app(*, pause_before_body: float = 0.0) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        if pause_before_body:
            await asyncio.sleep(pause_before_body)
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _protocol(app: Any) -> tuple[SluiceHttpProtocol, RecordingTransport]:
    config = Config(app, http="httptools", lifespan="off", log_config=None, access_log=False)
    config.load()
    proto = SluiceHttpProtocol(
        config=config,
        server_state=ServerState(),
        app_state={},
        limits=EdgeLimits.from_server(ServerConfig()),
    )
    transport = RecordingTransport()
    proto.connection_made(transport)
    return proto, transport


async def _settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


async def test_the_head_and_body_are_one_write() -> None:
    proto, transport = _protocol(_app())
    proto.data_received(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n")
    await _settle()
    [(kind, data)] = transport.calls
    assert kind == "writelines"
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok")
    proto.connection_lost(None)


async def test_a_slow_body_does_not_hold_the_head() -> None:
    """The head goes out at the end of the loop iteration, as before, when no body follows."""
    proto, transport = _protocol(_app(pause_before_body=0.3))
    proto.data_received(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n")
    await _settle(0.1)
    [(kind, head)] = transport.calls
    assert kind == "write" and head.startswith(b"HTTP/1.1 200 OK\r\n")
    await _settle(0.4)
    assert transport.calls[1:] == [("write", b"ok")]
    proto.connection_lost(None)


async def test_pipelined_requests_each_get_one_write_in_order() -> None:
    proto, transport = _protocol(_app())
    proto.data_received(b"GET /a HTTP/1.1\r\nhost: t\r\n\r\nGET /b HTTP/1.1\r\nhost: t\r\n\r\n")
    await _settle()
    assert [kind for kind, _ in transport.calls] == ["writelines", "writelines"]
    assert all(data.endswith(b"ok") for _, data in transport.calls)
    proto.connection_lost(None)


async def raw(gw: Gateway, request: bytes, *, then: bytes = b"") -> bytes:
    """Send ``request`` (and ``then`` after the first reply), read until the server closes."""
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        first = await asyncio.wait_for(reader.read(65536), 5)
        if then:
            writer.write(then)
            await writer.drain()
        return first + await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_expect_100_continue_is_not_held(gateway: Gateway) -> None:
    """The client sends the body only after ``100 Continue``: a held one would hang here."""
    head = (
        b"POST /v1/messages HTTP/1.1\r\nhost: t\r\nconnection: close\r\n"
        b"x-api-key: " + gateway.key.encode() + b"\r\ncontent-type: application/json\r\n"
        b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(BODY)
    )
    reply = await raw(gateway, head, then=BODY)
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert b'"type":"message"' in reply


@pytest.mark.parametrize("method", [b"HEAD", b"GET"])
async def test_a_response_without_a_body_write_is_not_held(gateway: Gateway, method: bytes) -> None:
    reply = await raw(
        gateway, method + b" /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\n") == (method == b"HEAD")


async def test_a_held_head_is_dropped_quietly_when_the_client_left() -> None:
    proto, transport = _protocol(_app(pause_before_body=0.3))
    proto.data_received(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n")
    writer = proto.cycle.transport
    assert isinstance(writer, HeadWriter)
    for _ in range(100):  # until the app has sent its head (held; the flush is due next turn)
        if writer.head is not None:
            break
        await asyncio.sleep(0)
    assert writer.head is not None
    transport.close()
    proto.connection_lost(None)
    await _settle(0.4)
    assert transport.calls == []
