"""The fake Anthropic upstream: exact wire bytes, SDK fidelity, each fault's observable effect."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import anthropic
import orjson
import pytest
from anthropic.types import MessageParam

from sluice.testing import (
    SCENARIO_NAMES,
    FakeAnthropic,
    FakeUsage,
    Fault,
    RecordedRequest,
    Reply,
    Scenario,
    ServerThread,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    scenario_by_name,
    serve_forever,
)
from sluice.testing.scenarios import Block, stream_events

MODEL = "claude-sonnet-5"
STREAM_BODY = orjson.dumps(
    {
        "model": MODEL,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
PLAIN_BODY = orjson.dumps(
    {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
)
USER: list[MessageParam] = [{"role": "user", "content": "hi"}]

# Golden bytes for the default reply on request 1 (framing of protocols.md §2.4).
GOLDEN_TEXT_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_fake_1","type":"message",'
    b'"role":"assistant","model":"claude-sonnet-5","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,'
    b'"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,'
    b'"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: ping\n"
    b'data: {"type":"ping"}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"Hello fro"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"m the fake"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":" upstream."}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
    b'"output_tokens":12}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-test", max_retries=0) as c:
        yield c


async def raw_exchange(fake: FakeAnthropic, request: bytes) -> tuple[bytes, bytes]:
    """Send raw bytes on a fresh TCP connection; return (head, body) as received until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def raw_post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def dechunk(body: bytes) -> tuple[list[bytes], bool]:
    """Split a chunked body into its chunks; True if the zero-length terminator arrived."""
    chunks: list[bytes] = []
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            return chunks, True
        chunks.append(rest[:size])
        assert rest[size : size + 2] == b"\r\n"
        body = rest[size + 2 :]
    return chunks, False


async def post_stream(session: aiohttp.ClientSession, fake: FakeAnthropic) -> bytes:
    url = fake.url + "/v1/messages?beta=true"
    async with session.post(url, data=STREAM_BODY) as resp:
        return await resp.read()


# --- wire format ----------------------------------------------------------------------------


async def test_stream_bytes_match_golden_and_headers(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    async with session.post(fake.url + "/v1/messages?beta=true", data=STREAM_BODY) as resp:
        body = await resp.read()
        assert resp.status == 200
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["request-id"] == "req_fake_1"
        assert resp.headers["transfer-encoding"] == "chunked"
    assert body == GOLDEN_TEXT_STREAM


async def test_each_event_is_its_own_chunk_and_stream_terminates(fake: FakeAnthropic) -> None:
    head, body = await raw_exchange(fake, raw_post("/v1/messages", STREAM_BODY))
    assert head.startswith(b"HTTP/1.1 200 OK")
    chunks, terminated = dechunk(body)
    assert terminated
    assert chunks == stream_events(Reply(), model=MODEL, n=1)
    assert b"".join(chunks) == GOLDEN_TEXT_STREAM


async def test_same_scenarios_same_order_give_same_sha256() -> None:
    scenario = scenario_by_name("tool_bash")

    async def digests() -> list[str]:
        async with FakeAnthropic(scenario) as server, aiohttp.ClientSession() as s:
            bodies = [await post_stream(s, server) for _ in range(2)]
        return [hashlib.sha256(b).hexdigest() for b in bodies]

    first, second = await digests(), await digests()
    assert first == second
    assert first[0] != first[1]  # the request counter is part of the ids


async def test_event_order_indices_and_tool_fragments(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    tool_input = {"command": "echo hi && uname -s", "description": "Print"}
    blocks: list[Block] = [
        TextBlock("abcdefgh", chunks=4),
        ToolUseBlock("Bash", tool_input, id="toolu_X"),
    ]
    fake.script(Scenario(Reply(blocks=blocks)))
    raw = await post_stream(session, fake)
    frames = [f for f in raw.split(b"\n\n") if f]
    names = [f.split(b"\n")[0].removeprefix(b"event: ").decode() for f in frames]
    datas = [orjson.loads(f.split(b"\n")[1].removeprefix(b"data: ")) for f in frames]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    compact = orjson.dumps(tool_input).decode()
    n_frags = -(-len(compact) // 7)
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * (1 + n_frags),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["delta"]["text"] for d in datas[3:7]] == ["ab", "cd", "ef", "gh"]
    assert datas[8]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_X",
        "name": "Bash",
        "input": {},
    }
    frags = [d["delta"]["partial_json"] for d in datas[9:-3]]
    assert frags[0] == ""
    assert all(len(f) == 7 for f in frags[1:-1])
    assert "".join(frags) == compact
    assert {d["index"] for d in datas[8:-2]} == {1}
    assert datas[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


async def test_thinking_has_one_signature_delta_just_before_stop(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    fake.script(scenario_by_name("thinking"))
    raw = await post_stream(session, fake)
    datas = [orjson.loads(f.split(b"\n")[1][6:]) for f in raw.split(b"\n\n") if f]
    block0 = [d for d in datas if d.get("index") == 0]
    kinds = [d["delta"]["type"] for d in block0 if d["type"] == "content_block_delta"]
    assert kinds == ["thinking_delta", "thinking_delta", "signature_delta"]
    assert block0[-2]["delta"] == {"type": "signature_delta", "signature": "EqQBCkYIBRgCKkC...sig"}
    assert block0[-1]["type"] == "content_block_stop"


# --- the official SDK as the client ---------------------------------------------------------


async def test_sdk_stream_accumulates_exactly_what_was_scripted(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    usage = FakeUsage(
        input_tokens=40,
        output_tokens=77,
        cache_read_input_tokens=2048,
        cache_creation_5m=512,
        cache_creation_1h=256,
    )
    blocks: list[Block] = [
        ThinkingBlock("I should list files.", signature="sig-123"),
        TextBlock("Listing the files now."),
        ToolUseBlock("Bash", {"command": "ls -la", "flags": [1, 2], "nested": {"a": "é"}}),
    ]
    fake.script(Scenario(Reply(blocks=blocks, usage=usage)))
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
        texts = [t async for t in stream.text_stream]
        msg = await stream.get_final_message()
    assert "".join(texts) == "Listing the files now."
    assert msg.id == "msg_fake_1"
    assert msg.model == MODEL
    assert msg.stop_reason == "tool_use"
    dumped = [b.model_dump(exclude_none=True) for b in msg.content]
    assert dumped == [
        {"type": "thinking", "thinking": "I should list files.", "signature": "sig-123"},
        {"type": "text", "text": "Listing the files now."},
        {
            "type": "tool_use",
            "id": "toolu_fake_1_2",
            "name": "Bash",
            "input": {"command": "ls -la", "flags": [1, 2], "nested": {"a": "é"}},
        },
    ]
    assert msg.usage.input_tokens == 40
    assert msg.usage.output_tokens == 77
    assert msg.usage.cache_read_input_tokens == 2048
    assert msg.usage.cache_creation_input_tokens == 768
    assert msg.usage.cache_creation is not None
    assert msg.usage.cache_creation.ephemeral_5m_input_tokens == 512
    assert msg.usage.cache_creation.ephemeral_1h_input_tokens == 256
    assert msg.usage.service_tier == "standard"

    # The non-streaming Message is the same thing in final form.
    fake.script(Scenario(Reply(blocks=blocks, usage=usage, message_id="msg_fake_1")))
    plain = await client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    plain_dump = plain.model_dump()
    plain_dump["content"][2]["id"] = "toolu_fake_1_2"
    assert plain_dump == msg.model_dump()


async def test_sdk_reply_model_override_and_end_turn(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(Scenario(Reply(model="claude-haiku-4-5-20251001", message_id="msg_X")))
    msg = await client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert (msg.id, msg.model, msg.stop_reason) == (
        "msg_X",
        "claude-haiku-4-5-20251001",
        "end_turn",
    )
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Hello from the fake upstream."


async def test_sdk_count_tokens(client: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    count = await client.messages.count_tokens(model=MODEL, messages=USER)
    assert count.input_tokens == max(1, len(fake.requests[-1].body) // 4)
    assert fake.requests[-1].path == "/v1/messages/count_tokens"
    assert fake.messages_requests() == []
    async with (
        FakeAnthropic(count_tokens_value=1234) as other,
        anthropic.AsyncAnthropic(base_url=other.url, api_key="k") as c,
    ):
        assert (await c.messages.count_tokens(model=MODEL, messages=USER)).input_tokens == 1234


async def test_sdk_models_list_and_retrieve(client: anthropic.AsyncAnthropic) -> None:
    page = await client.models.list()
    assert [m.id for m in page.data] == [
        "claude-opus-4-8",
        "claude-sonnet-5",
        "claude-haiku-4-5-20251001",
    ]
    assert [m.display_name for m in page.data] == [
        "Claude Opus 4.8",
        "Claude Sonnet 5",
        "Claude Haiku 4.5",
    ]
    assert (page.has_more, page.first_id, page.last_id) == (
        False,
        "claude-opus-4-8",
        "claude-haiku-4-5-20251001",
    )
    model = await client.models.retrieve("claude-sonnet-5")
    assert (model.id, model.type, model.created_at.year) == ("claude-sonnet-5", "model", 2025)
    with pytest.raises(anthropic.NotFoundError) as info:
        await client.models.retrieve("gpt-4")
    assert info.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: gpt-4"},
        "request_id": info.value.request_id,
    }


@pytest.mark.parametrize(
    ("name", "status", "error_type", "exc"),
    [
        ("err400", 400, "invalid_request_error", anthropic.BadRequestError),
        ("err401", 401, "authentication_error", anthropic.AuthenticationError),
        ("err403", 403, "permission_error", anthropic.PermissionDeniedError),
        ("err429", 429, "rate_limit_error", anthropic.RateLimitError),
        ("err500", 500, "api_error", anthropic.InternalServerError),
        ("err529", 529, "overloaded_error", anthropic.APIStatusError),
    ],
)
async def test_http_error_scenarios(
    fake: FakeAnthropic,
    client: anthropic.AsyncAnthropic,
    session: aiohttp.ClientSession,
    name: str,
    status: int,
    error_type: str,
    exc: type[anthropic.APIStatusError],
) -> None:
    fake.script(scenario_by_name(name), scenario_by_name(name))
    with pytest.raises(exc) as info:
        async with client.messages.stream(model=MODEL, max_tokens=8, messages=USER) as stream:
            await stream.get_final_message()
    assert info.value.status_code == status
    assert info.value.request_id == "req_fake_1"
    async with session.post(fake.url + "/v1/messages", data=STREAM_BODY) as resp:
        body = await resp.json()
        assert resp.status == status
        assert resp.headers["content-type"] == "application/json"
        assert resp.headers.get("retry-after") == ("2" if status == 429 else None)
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"] == resp.headers["request-id"] == "req_fake_2"


async def test_html_502_and_retry_headers(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    fake.script(
        scenario_by_name("html502"),
        Scenario(fault=Fault(status=500, retry_after="0.5", should_retry="false")),
        Scenario(fault=Fault.json_error(403, "tool_not_allowed", "Bash is denied")),
    )
    async with session.post(fake.url + "/v1/messages", data=STREAM_BODY) as resp:
        assert resp.status == 502
        assert resp.headers["content-type"] == "text/html"
        assert b"<h1>502 Bad Gateway</h1>" in await resp.read()
    async with session.post(fake.url + "/v1/messages", data=PLAIN_BODY) as resp:
        assert resp.status == 500
        assert resp.headers["retry-after"] == "0.5"
        assert resp.headers["x-should-retry"] == "false"
    async with session.post(fake.url + "/v1/messages", data=PLAIN_BODY) as resp:
        body = await resp.json()
    assert resp.status == 403
    assert body["error"] == {"type": "tool_not_allowed", "message": "Bash is denied"}
    # The queue is drained: back to the default reply.
    async with session.post(fake.url + "/v1/messages", data=STREAM_BODY) as resp:
        assert resp.status == 200


async def test_sse_error_after_three_events(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(scenario_by_name("sse_error"), scenario_by_name("sse_error"))
    head, body = await raw_exchange(fake, raw_post("/v1/messages", STREAM_BODY))
    assert head.startswith(b"HTTP/1.1 200 OK")
    chunks, terminated = dechunk(body)
    assert terminated  # the stream ends normally after the error frame
    assert chunks[:3] == stream_events(Reply(), model=MODEL, n=1)[:3]
    assert chunks[3:] == [
        b'event: error\ndata: {"type":"error","error":'
        b'{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    ]
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(model=MODEL, max_tokens=8, messages=USER) as stream:
            await stream.get_final_message()
    assert info.value.status_code == 200
    assert info.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


async def test_drop_aborts_tcp_without_chunk_terminator(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    fake.script(scenario_by_name("drop"), scenario_by_name("drop"))
    _, body = await raw_exchange(fake, raw_post("/v1/messages", STREAM_BODY))
    chunks, terminated = dechunk(body)
    assert not terminated
    assert chunks == stream_events(Reply(), model=MODEL, n=1)[:3]
    with pytest.raises(aiohttp.ClientPayloadError):
        await post_stream(session, fake)
    assert fake.cancelled_streams == 0  # the server cut it; no client went away


async def test_hang_then_client_disconnect_counts_a_cancel(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    fake.script(scenario_by_name("hang"))
    resp = await session.post(fake.url + "/v1/messages", data=STREAM_BODY)
    first = await resp.content.readuntil(b"\n\n")
    assert first.startswith(b"event: message_start\n")
    assert fake.active_streams == 1
    assert fake.cancelled_streams == 0
    resp.close()  # drop the connection, like a gateway whose client went away
    assert await fake.wait_cancelled(1, timeout=3.0)
    assert fake.cancelled_streams == 1
    assert fake.active_streams == 0


async def test_hang_before_headers_times_out_then_cancel(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    fake.script(Scenario(fault=Fault(hang_before_headers=True)))
    with pytest.raises(asyncio.TimeoutError):
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with session.post(fake.url + "/v1/messages", data=STREAM_BODY, timeout=timeout):
            pass
    assert await fake.wait_cancelled(1, timeout=3.0)
    assert not await fake.wait_cancelled(2, timeout=0.05)


async def test_delays_and_mid_stream_disconnect(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    fake.script(Scenario(fault=Fault(first_byte_delay=0.2, event_delay=0.03)))
    t0 = time.monotonic()
    async with session.post(fake.url + "/v1/messages", data=STREAM_BODY) as resp:
        t_headers = time.monotonic() - t0
        body = await resp.read()
    t_total = time.monotonic() - t0
    n_events = len(stream_events(Reply(), model=MODEL, n=1))
    assert 0.2 <= t_headers < 0.2 + 0.5
    assert t_total >= 0.2 + 0.03 * (n_events - 1)
    assert body == GOLDEN_TEXT_STREAM

    fake.script(Scenario(fault=Fault(event_delay=0.2)))
    resp = await session.post(fake.url + "/v1/messages", data=STREAM_BODY)
    await resp.content.readuntil(b"\n\n")
    resp.close()
    assert await fake.wait_cancelled(1, timeout=3.0)


def test_named_scenarios() -> None:
    assert set(SCENARIO_NAMES) >= {"text", "tool_bash", "hang", "slow", "html502", "cache"}
    for name in SCENARIO_NAMES:
        assert isinstance(scenario_by_name(name), Scenario)
    bash = scenario_by_name("tool_bash", bash_command="echo X").reply.blocks
    assert bash == [
        TextBlock("I'll run that command."),
        ToolUseBlock("Bash", {"command": "echo X", "description": "Run a command"}),
    ]
    assert scenario_by_name("err429").fault == Fault(status=429, retry_after="2")
    assert scenario_by_name("slow").fault == Fault(first_byte_delay=0.5, event_delay=0.05)
    cache = scenario_by_name("cache").reply.usage
    assert (cache.cache_read_input_tokens, cache.cache_creation_5m, cache.cache_creation_1h) == (
        2048,
        512,
        256,
    )
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_by_name("nope")


# --- recording, routing, scripting ----------------------------------------------------------


async def test_records_raw_headers_in_order_and_case_and_raw_body(fake: FakeAnthropic) -> None:
    body = b'{"model": "m",  "stream": false, "messages": []}'  # odd spacing must survive
    request = (
        b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: gw.local\r\nX-Api-Key: sk-1\r\n"
        b"anthropic-version: 2023-06-01\r\nANTHROPIC-BETA: a,b\r\nx-app: cli\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    head, resp_body = await raw_exchange(fake, request)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert orjson.loads(resp_body)["type"] == "message"
    rec = fake.requests[0]
    assert rec == RecordedRequest(
        method="POST",
        path="/v1/messages",
        query="beta=true",
        headers=[
            ("Host", "gw.local"),
            ("X-Api-Key", "sk-1"),
            ("anthropic-version", "2023-06-01"),
            ("ANTHROPIC-BETA", "a,b"),
            ("x-app", "cli"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
        body=body,
    )
    assert rec.header("anthropic-beta") == "a,b"
    assert rec.header("x-missing") is None
    assert rec.json() == {"model": "m", "stream": False, "messages": []}


async def test_routes_request_ids_and_recording_of_everything(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    async with session.head(fake.url + "/") as resp:
        assert (resp.status, resp.headers["request-id"]) == (200, "req_fake_1")
    async with session.get(fake.url + "/") as resp:
        assert resp.status == 200
    async with session.get(fake.url + "/v2/nothing?x=1") as resp:
        body = await resp.json()
        assert resp.status == 404
        assert resp.headers["request-id"] == "req_fake_3"
    assert body["error"]["type"] == "not_found_error"
    async with session.post(fake.url + "/v1/messages", data=b"{not json") as resp:
        body = await resp.json()
        assert resp.status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert [(r.method, r.path, r.query) for r in fake.requests] == [
        ("HEAD", "/", ""),
        ("GET", "/", ""),
        ("GET", "/v2/nothing", "x=1"),
        ("POST", "/v1/messages", ""),
    ]
    assert fake.messages_requests() == fake.requests[3:]
    fake.clear()
    assert fake.requests == []


async def test_script_queue_then_default(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    fake.set_default(Scenario(Reply(blocks=[TextBlock("default")])))
    fake.script(
        Scenario(Reply(blocks=[TextBlock("one")])), Scenario(Reply(blocks=[TextBlock("two")]))
    )
    texts = []
    for _ in range(3):
        async with session.post(fake.url + "/v1/messages", data=PLAIN_BODY) as resp:
            texts.append((await resp.json())["content"][0]["text"])
    assert texts == ["one", "two", "default"]


async def test_small_writes_do_not_stall(
    fake: FakeAnthropic, session: aiohttp.ClientSession
) -> None:
    # Nagle + delayed ACK would cost ~40 ms per stream on loopback; 20 streams stay far below.
    t0 = time.monotonic()
    for _ in range(20):
        await post_stream(session, fake)
    assert time.monotonic() - t0 < 0.6


# --- ServerThread and the CLI entry point ---------------------------------------------------


def test_server_thread_sync_usage() -> None:
    fake = FakeAnthropic(scenario_by_name("hang"))
    with ServerThread(fake.start, fake.stop) as thread:
        with urllib.request.urlopen(fake.url + "/v1/models", timeout=5) as resp:
            assert orjson.loads(resp.read())["first_id"] == "claude-opus-4-8"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(fake.url + "/missing", timeout=5)
        assert info.value.code == 404
        info.value.close()
        with socket.create_connection(("127.0.0.1", fake.port)) as sock:
            sock.sendall(raw_post("/v1/messages", STREAM_BODY))
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        assert thread.call(fake.wait_cancelled, 1, 3.0)
        port = fake.port
    # Stopped: the port no longer accepts connections.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_server_thread_reraises_startup_error() -> None:
    first = FakeAnthropic()
    with ServerThread.for_fake(first):
        second = FakeAnthropic(port=first.port)
        thread = ServerThread.for_fake(second)
        with pytest.raises(OSError):
            thread.start()
        thread.stop()  # harmless after a failed start


async def test_serve_forever_prints_and_serves(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = asyncio.create_task(serve_forever(port, "tool_read"))
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                try:
                    async with s.post(f"http://127.0.0.1:{port}/v1/messages", data=PLAIN_BODY) as r:
                        body = await r.json()
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert body["content"][0]["input"] == {"file_path": "/etc/hostname"}
    assert capsys.readouterr().out == (
        "Fake Anthropic upstream (DEMO, not a real model) listening on "
        f"http://127.0.0.1:{port} scenario=tool_read\n"
    )


async def test_max_recorded_bounds_memory() -> None:
    import aiohttp as _aiohttp

    async with FakeAnthropic(max_recorded=3) as fake:
        async with _aiohttp.ClientSession() as s:
            for i in range(5):
                async with s.post(f"{fake.url}/v1/messages", data=b'{"n":%d}' % i) as r:
                    await r.read()
        assert [r.body for r in fake.requests] == [b'{"n":2}', b'{"n":3}', b'{"n":4}']
