"""Every error Sluice writes, every upstream fault it relays, and the ledger row for each."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from sluice.testing import FakeAnthropic, Fault, Reply, Scenario, TextBlock, scenario_by_name

from support import Gateway, start_gateway

SMALL = (
    b'{"model":"claude-opus-4-8","max_tokens":64,"stream":true,'
    b'"messages":[{"role":"user","content":"hi"}]}'
)


async def post(
    gateway: Gateway, body: bytes, *, key: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    hdrs = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
    if key is not None:
        hdrs["x-api-key"] = key
    hdrs.update(headers or {})
    data = io.BytesIO(body) if len(body) > 1024 * 1024 else body
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gateway.url}/v1/messages", data=data, headers=hdrs) as r,
    ):
        return r.status, CIMultiDict(r.headers), await r.read()


def envelope(body: bytes) -> dict[str, object]:
    doc = orjson.loads(body)
    assert doc["type"] == "error"
    assert doc["request_id"].startswith("req_")
    error = doc["error"]
    assert error["type"] == error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error  # type: ignore[no-any-return]


async def test_missing_and_unknown_key_401_no_retry(gateway: Gateway, fake: FakeAnthropic) -> None:
    for key in (None, "not-a-key", "lw_vk_live_" + "0" * 26 + "x" * 32, gateway.key + "x"):
        status, headers, body = await post(gateway, SMALL, key=key)
        assert status == 401
        assert headers["x-should-retry"] == "false"
        error = envelope(body)
        assert error["code"] == "invalid_api_key"
        if key:
            assert key not in body.decode()
    assert fake.messages_requests() == []


async def test_bearer_wins_over_x_api_key(gateway: Gateway, fake: FakeAnthropic) -> None:
    status, _, _ = await post(
        gateway, SMALL, key="wrong", headers={"authorization": f"Bearer {gateway.key}"}
    )
    assert status == 200
    status, _, _ = await post(
        gateway, SMALL, key=gateway.key, headers={"authorization": "Bearer wrong"}
    )
    assert status == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"not json at all", None),
        (b"[1,2]", None),
        (b'{"messages":[]}', "model"),
        (b'{"model":"claude-opus-4-8"}', "messages"),
    ],
)
async def test_invalid_request_400(
    gateway: Gateway, fake: FakeAnthropic, body: bytes, param: str | None
) -> None:
    status, headers, raw = await post(gateway, body, key=gateway.key)
    assert status == 400
    error = envelope(raw)
    assert error["code"] == "invalid_request_error"
    assert error["param"] == param
    assert fake.messages_requests() == []
    row = await gateway.ledger_row(headers["request-id"])
    assert (row["status"], row["error_code"]) == (400, "invalid_request_error")


async def test_body_limits_20mb_ok_33mb_413(gateway: Gateway, fake: FakeAnthropic) -> None:
    filler = "x" * (20 * 1024 * 1024)
    big = orjson.dumps(
        {
            "model": "claude-opus-4-8",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": filler}],
        }
    )
    status, _, _ = await post(gateway, big, key=gateway.key)
    assert status == 200
    assert fake.messages_requests()[-1].body == big
    huge = big + b" " * (13 * 1024 * 1024)
    status, headers, raw = await post(gateway, huge, key=gateway.key)
    assert status == 413, headers
    assert headers["content-type"] == "application/json", headers
    assert envelope(raw)["code"] == "payload_too_large"
    assert len(fake.messages_requests()) == 1


async def test_413_without_content_length(gateway: Gateway, fake: FakeAnthropic) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(34):
            yield b" " * (1024 * 1024)

    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{gateway.url}/v1/messages", data=chunks(), headers={"x-api-key": gateway.key}
        ) as r,
    ):
        assert r.status == 413
        assert envelope(await r.read())["code"] == "payload_too_large"


@pytest.mark.parametrize("status", [400, 403, 404, 429, 500, 529])
async def test_upstream_json_error_passthrough(
    gateway: Gateway, fake: FakeAnthropic, status: int
) -> None:
    upstream_body = (
        b'{"type":"error","error":{"type":"custom_type","message":"exact wording %d"},'
        b'"request_id":"req_upstream"}' % status
    )
    fake.script(
        Scenario(
            fault=Fault(status=status, body=upstream_body, retry_after="7", should_retry="false")
        )
    )
    got_status, headers, body = await post(gateway, SMALL, key=gateway.key)
    assert got_status == status
    assert body == upstream_body
    assert headers["retry-after"] == "7"
    assert headers["x-should-retry"] == "false"
    assert headers["request-id"].startswith("req_") and headers["request-id"] != "req_upstream"
    assert headers["upstream-request-id"].startswith("req_fake_")
    row = await gateway.ledger_row(headers["request-id"])
    assert (row["status"], row["error_code"]) == (status, "custom_type")


async def test_upstream_html_error_is_wrapped(gateway: Gateway, fake: FakeAnthropic) -> None:
    fake.script(scenario_by_name("html502"))
    status, headers, body = await post(gateway, SMALL, key=gateway.key)
    assert status == 502
    assert headers["content-type"] == "application/json"
    error = envelope(body)
    assert error["code"] == "provider_error"
    assert "502" in str(error["message"]) and "html" in str(error["message"]).lower()
    assert "<html" not in body.decode().lower()[:1]  # the body is JSON, not the page


async def test_mid_stream_drop_becomes_error_event(gateway: Gateway, fake: FakeAnthropic) -> None:
    fake.script(scenario_by_name("drop"))
    status, headers, body = await post(gateway, SMALL, key=gateway.key)
    assert status == 200
    events = body.split(b"\n\n")
    assert events[0].startswith(b"event: message_start")
    assert body.count(b"event: ") == 4  # three relayed events, then the error frame
    last = [e for e in events if e][-1]
    assert last.startswith(b"event: error\ndata: ")
    frame = orjson.loads(last.split(b"data: ", 1)[1])
    assert frame["type"] == "error"
    assert frame["error"]["type"] == "api_error"
    assert frame["error"]["code"] == "provider_error"
    row = await gateway.ledger_row(headers["request-id"])
    assert row["status"] == 200 and row["error_code"] == "provider_error"
    assert row["input_tokens"] == 25  # usage seen before the drop is kept


async def test_upstream_sse_error_event_relayed(gateway: Gateway, fake: FakeAnthropic) -> None:
    fake.script(scenario_by_name("sse_error"))
    _, _, body = await post(gateway, SMALL, key=gateway.key)
    assert body.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n'
    )


async def test_mid_stream_error_event_is_ledgered_with_its_type(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    """The client got 200 and then the upstream's `event: error`: the row keeps the 200 and
    records the event's error type (it said nothing about the failure before)."""
    fake.script(Scenario(fault=Fault(error_after_events=3, error_type="overloaded_error")))
    status, headers, body = await post(gateway, SMALL, key=gateway.key)
    assert status == 200 and b'"type":"overloaded_error"' in body
    row = await gateway.ledger_row(headers["request-id"])
    assert (row["status"], row["error_code"]) == (200, "overloaded_error")
    assert row["input_tokens"] == 25


async def _idle_gateway(tmp_path: Path, fake: FakeAnthropic, idle_s: float) -> Gateway:
    return await start_gateway(
        tmp_path / "s.db", fake.url, provider_yaml=f"    stream_idle_timeout_s: {idle_s}"
    )


async def test_mid_stream_silence_ends_with_idle_timeout(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    """An upstream that goes silent mid-stream: after stream_idle_timeout_s the client's
    stream ends with an `event: error` frame, the upstream connection is closed, and the
    ledger row records stream_idle_timeout."""
    gw = await _idle_gateway(tmp_path, fake, 0.5)
    try:
        fake.script(Scenario(fault=Fault(hang_after_events=3)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, headers, body = await post(gw, SMALL, key=gw.key)
        assert loop.time() - started < 5
        assert status == 200 and body.count(b"event: ") == 4  # three events, then the error
        last = [e for e in body.split(b"\n\n") if e][-1]
        assert last.startswith(b"event: error\ndata: ")
        error = orjson.loads(last.split(b"data: ", 1)[1])["error"]
        assert (error["type"], error["code"]) == ("api_error", "stream_idle_timeout")
        assert "stream_idle_timeout_s" in error["message"]
        assert await fake.wait_cancelled(1, timeout=3.0)
        row = await gw.ledger_row(headers["request-id"])
        assert (row["status"], row["error_code"]) == (200, "stream_idle_timeout")
        assert row["input_tokens"] == 25
    finally:
        await gw.server.stop()


async def test_idle_timeout_before_the_first_event_is_504(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    """Headers came, then nothing: no byte reached the client, so it gets a proper 504."""
    gw = await _idle_gateway(tmp_path, fake, 0.3)
    try:
        fake.script(Scenario(fault=Fault(hang_after_events=0)))
        status, headers, body = await post(gw, SMALL, key=gw.key)
        assert status == 504
        assert envelope(body)["code"] == "stream_idle_timeout"
        row = await gw.ledger_row(headers["request-id"])
        assert (row["status"], row["error_code"]) == (504, "stream_idle_timeout")
    finally:
        await gw.server.stop()


async def test_idle_timeout_bounds_silence_not_the_stream(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    """Events 0.2 s apart for ~2 s under a 0.5 s idle timeout: the stream runs to its end."""
    gw = await _idle_gateway(tmp_path, fake, 0.5)
    try:
        reply = Reply([TextBlock("a long and slow answer", chunks=8)])
        fake.script(Scenario(reply, Fault(event_delay=0.2)))
        status, headers, body = await post(gw, SMALL, key=gw.key)
        assert status == 200 and body.endswith(b'data: {"type":"message_stop"}\n\n')
        assert b"event: error" not in body
        row = await gw.ledger_row(headers["request-id"])
        assert (row["status"], row["error_code"]) == (200, None)
    finally:
        await gw.server.stop()


async def test_client_disconnect_cancels_upstream(gateway: Gateway, fake: FakeAnthropic) -> None:
    fake.script(scenario_by_name("hang"))
    session = aiohttp.ClientSession()
    resp = await session.post(
        f"{gateway.url}/v1/messages", data=SMALL, headers={"x-api-key": gateway.key}
    )
    assert resp.status == 200
    rid = resp.headers["request-id"]
    await resp.content.readany()  # the first event arrived; the upstream now hangs
    resp.close()
    await session.close()
    assert await fake.wait_cancelled(1, timeout=3.0)
    row = await gateway.ledger_row(rid)
    assert row["client_disconnected"] is True
    assert row["input_tokens"] == 25


async def test_disconnect_before_headers_cancels_upstream(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    fake.script(Scenario(fault=Fault(hang_before_headers=True)))
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            await s.post(
                f"{gateway.url}/v1/messages",
                data=SMALL,
                headers={"x-api-key": gateway.key},
                timeout=aiohttp.ClientTimeout(total=0.5),
            )
    assert await fake.wait_cancelled(1, timeout=3.0)
    rows = [r for r in await gateway.ledger_rows() if r["client_disconnected"]]
    assert rows and rows[-1]["status"] == 499


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_502(tmp_path: Path) -> None:
    gw = await start_gateway(tmp_path / "s.db", f"http://127.0.0.1:{_free_port()}")
    try:
        status, headers, body = await post(gw, SMALL, key=gw.key)
        assert status == 502
        assert envelope(body)["code"] == "provider_error"
        row = await gw.ledger_row(headers["request-id"])
        assert (row["status"], row["error_code"]) == (502, "provider_error")
    finally:
        await gw.server.stop()


async def test_header_timeout_is_504(tmp_path: Path, fake: FakeAnthropic) -> None:
    gw = await start_gateway(
        tmp_path / "s.db", fake.url, provider_yaml="    header_timeout_ms: 300"
    )
    try:
        fake.script(Scenario(fault=Fault(hang_before_headers=True)))
        status, headers, body = await post(gw, SMALL, key=gw.key)
        assert status == 504
        assert envelope(body)["code"] == "provider_timeout"
        row = await gw.ledger_row(headers["request-id"])
        assert (row["status"], row["error_code"]) == (504, "provider_timeout")
    finally:
        await gw.server.stop()


async def test_upstream_ends_before_first_event_is_502(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    fake.script(Scenario(fault=Fault(drop_after_events=0)))
    status, _, body = await post(gateway, SMALL, key=gateway.key)
    assert status == 502
    assert envelope(body)["code"] == "provider_error"


async def test_connect_timeout_is_the_providers(tmp_path: Path) -> None:
    """A listener whose accept queue is full never completes the handshake: the provider's
    connect_timeout_ms bounds the wait, and the client gets 504 provider_timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue (nobody accepts)
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    gw = await start_gateway(
        tmp_path / "c.db", f"http://127.0.0.1:{port}", provider_yaml="    connect_timeout_ms: 300"
    )
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, _, body = await post(gw, SMALL, key=gw.key)
        assert loop.time() - started < 3.0  # not the session-wide 10 s default
        assert status == 504 and envelope(body)["code"] == "provider_timeout"
    finally:
        await gw.server.stop()
        for s in fillers:
            s.close()
        listener.close()
