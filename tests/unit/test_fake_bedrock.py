"""The fake Bedrock Runtime over real HTTP: SigV4-signed invoke and stream, frames as botocore
decodes them, the official SDK's Bedrock client, auth and body checks, and every fault."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
import yarl
from anthropic._constants import ANTHROPIC_API_VERSION
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from multidict import CIMultiDictProxy

from sluice.providers.aws_auth import sign_request
from sluice.streaming.eventstream import EventStreamToSSE
from sluice.testing.fake_anthropic import RecordedRequest
from sluice.testing.fake_bedrock import (
    FakeBedrock,
    bedrock_error,
    invocation_metrics,
    stream_exception,
)
from sluice.testing.scenarios import (
    Fault,
    Reply,
    Scenario,
    TextBlock,
    message_json,
    scenario_by_name,
    stream_events,
)
from sluice.translate.bedrock import (
    bedrock_exception_to_anthropic,
    invoke_url,
    to_bedrock_body,
)

SONNET = "claude-sonnet-4-5-20250929"
SONNET_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
REGION = "us-east-1"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDS = Credentials("AKIDEXAMPLE", SECRET, "session-token")
FIRST_PARTY = orjson.dumps(
    {
        "model": SONNET,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
BODY = to_bedrock_body(FIRST_PARTY, ["interleaved-thinking-2025-05-14"])


@pytest.fixture
async def bedrock() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    fake: FakeBedrock,
    session: aiohttp.ClientSession,
    *,
    stream: bool,
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
    sign: bool = True,
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    url = invoke_url(REGION, SONNET_ID, stream, base_url=fake.url)
    sent = {"content-type": "application/json", **(headers or {})}
    if sign:
        sent = sign_request("POST", url, body, sent, CREDS, REGION)
    # encoded=True: yarl would otherwise turn %3A back into ':' and the signed path would differ
    async with session.post(yarl.URL(url, encoded=True), data=body, headers=sent) as resp:
        return resp.status, resp.headers, await resp.read()


def decode_frames(raw: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return list(buffer)


def expected_signature(req: RecordedRequest, secret: str) -> tuple[str, str]:
    """(signature sent, signature AWS would compute for the request as it arrived): SigV4
    written out independently of botocore."""
    auth = req.header("Authorization") or ""
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=[^/]+/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})",
        auth,
    )
    assert match is not None, auth
    date, region, service, signed, sent = match.groups()
    values: dict[str, list[str]] = {}
    for name, value in req.headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    canonical_headers = "".join(f"{h}:{','.join(values[h])}\n" for h in signed.split(";"))
    canonical = "\n".join(
        [
            req.method,
            urllib.parse.quote(req.path, safe="/~"),  # non-S3 services encode the path again
            req.query,
            canonical_headers,
            signed,
            hashlib.sha256(req.body).hexdigest(),
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256", req.header("X-Amz-Date") or "", scope, digest])
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return sent, hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


# --- success paths --------------------------------------------------------------------------


async def test_invoke_returns_the_message_and_token_headers(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    status, headers, body = await post(bedrock, session, stream=False)
    assert status == 200
    assert orjson.loads(body) == message_json(Reply(), model=SONNET, n=1)
    assert headers["content-type"] == "application/json"
    assert headers["x-amzn-RequestId"] == "00000000-0000-4000-8000-000000000001"
    assert headers["x-amzn-bedrock-input-token-count"] == "25"
    assert headers["x-amzn-bedrock-output-token-count"] == "12"


async def test_stream_frames_decode_with_botocore(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    reply = scenario_by_name("tool_bash").reply
    bedrock.set_default(Scenario(reply))
    status, headers, raw = await post(bedrock, session, stream=True)
    assert status == 200
    assert headers["content-type"] == "application/vnd.amazon.eventstream"
    frames = decode_frames(raw)
    events = stream_events(reply, model=SONNET, n=1)
    assert len(frames) == len(events)
    for frame, sse in zip(frames, events, strict=True):
        assert frame.headers == {
            ":event-type": "chunk",
            ":content-type": "application/json",
            ":message-type": "event",
        }
        assert frame.to_response_dict()["status_code"] == 200
        wrapper = orjson.loads(frame.payload)
        assert set(wrapper) == {"bytes", "p"}  # Bedrock pads every chunk with "p"
        event = orjson.loads(base64.b64decode(wrapper["bytes"]))
        expected = orjson.loads(sse.split(b"data: ", 1)[1])
        if event["type"] == "message_stop":
            assert event.pop("amazon-bedrock-invocationMetrics") == invocation_metrics(reply)
        assert event == expected


async def test_stream_through_the_decoder_is_the_first_party_sse(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    reply = scenario_by_name("thinking").reply
    bedrock.script(Scenario(reply))
    decoder = EventStreamToSSE()
    url = invoke_url(REGION, SONNET_ID, True, base_url=bedrock.url)
    signed = sign_request("POST", url, BODY, {"content-type": "application/json"}, CREDS, REGION)
    out = b""
    async with session.post(yarl.URL(url, encoded=True), data=BODY, headers=signed) as resp:
        async for chunk in resp.content.iter_any():
            out += decoder.feed(chunk)
    out += decoder.finish()
    assert out == b"".join(stream_events(reply, model=SONNET, n=1))


async def test_the_signature_covers_exactly_what_arrived(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    await post(bedrock, session, stream=True, headers={"X-Amzn-Bedrock-Accept": "*/*"})
    recorded = bedrock.requests[0]
    assert (
        recorded.path
        == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    )
    sent, computed = expected_signature(recorded, SECRET)
    assert sent == computed
    assert recorded.header("X-Amz-Security-Token") == "session-token"


async def test_a_requoted_url_no_longer_matches_its_signature(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    url = invoke_url(REGION, SONNET_ID, False, base_url=bedrock.url)
    signed = sign_request("POST", url, BODY, {"content-type": "application/json"}, CREDS, REGION)
    async with session.post(url, data=BODY, headers=signed) as resp:  # yarl decodes %3A
        assert resp.status == 200  # the fake checks the shape only; AWS would refuse this
    recorded = bedrock.requests[0]
    assert "%3A" not in recorded.path
    sent, computed = expected_signature(recorded, SECRET)
    assert sent != computed


async def test_the_official_sdk_bedrock_client_works_against_the_fake() -> None:
    # anthropic 2.x puts its API version in Bedrock bodies, not bedrock-2023-05-31
    versions = {"bedrock-2023-05-31", ANTHROPIC_API_VERSION}
    async with FakeBedrock(accepted_versions=versions) as bedrock:
        await _drive_the_sdk(bedrock)


async def _drive_the_sdk(bedrock: FakeBedrock) -> None:
    client = anthropic.AsyncAnthropicBedrock(
        api_key="bedrock-api-key", aws_region=REGION, base_url=bedrock.url, max_retries=0
    )
    async with client:
        bedrock.script(Scenario(Reply(blocks=[TextBlock("Hi there.")])))
        message = await client.messages.create(
            model=SONNET_ID, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content[0].type == "text" and message.content[0].text == "Hi there."
        assert message.model == SONNET
        async with client.beta.messages.stream(
            model=SONNET_ID,
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            betas=["interleaved-thinking-2025-05-14"],
        ) as stream:
            final = await stream.get_final_message()
        assert final.content[0].type == "text"
        assert final.content[0].text == "Hello from the fake upstream."
        assert final.usage.output_tokens == 12
        with pytest.raises(anthropic.BadRequestError, match="invalid beta flag"):
            await client.beta.messages.create(
                model=SONNET_ID,
                max_tokens=16,
                messages=[{"role": "user", "content": "hi"}],
                betas=["claude-code-20250219"],
            )
        bedrock.script(Scenario(fault=bedrock_error(429)))
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(
                model=SONNET_ID, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
    streamed = orjson.loads(bedrock.requests[1].body)
    assert streamed["anthropic_version"] == ANTHROPIC_API_VERSION
    assert streamed["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert "model" not in streamed and "stream" not in streamed


# --- auth and body checks -------------------------------------------------------------------


async def test_missing_or_malformed_sigv4_is_refused_without_using_a_scenario(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    bedrock.script(Scenario(fault=bedrock_error(503)))
    status, headers, body = await post(bedrock, session, stream=False, sign=False)
    assert status == 403
    assert orjson.loads(body) == {"message": "Missing Authentication Token"}
    assert headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException:")
    # a signature for another service
    url = invoke_url(REGION, SONNET_ID, False, base_url=bedrock.url)
    request = AWSRequest(
        method="POST", url=url, data=BODY, headers={"content-type": "application/json"}
    )
    SigV4Auth(CREDS, "s3", REGION).add_auth(request)
    async with session.post(
        yarl.URL(url, encoded=True), data=BODY, headers=dict(request.headers.items())
    ) as resp:
        assert resp.status == 403
        assert "service" in (await resp.json())["message"]
    # the right shape but no X-Amz-Date
    signed = sign_request("POST", url, BODY, {}, CREDS, REGION)
    del signed["X-Amz-Date"]
    async with session.post(yarl.URL(url, encoded=True), data=BODY, headers=signed) as resp:
        assert resp.status == 403
    # a Bedrock API key passes; the scripted 503 is still next
    status, _, _ = await post(
        bedrock, session, stream=False, sign=False, headers={"Authorization": "Bearer k"}
    )
    assert status == 503
    assert len(bedrock.requests) == 4


@pytest.mark.parametrize(
    ("first_party", "betas", "message"),
    [
        ({"model": SONNET}, [], "model: Extra inputs are not permitted"),
        ({"stream": True}, [], "stream: Extra inputs are not permitted"),
        ({}, ["claude-code-20250219"], "invalid beta flag"),
        ({}, ["effort-2025-11-24", "context-1m-2025-08-07"], "invalid beta flag"),
    ],
)
async def test_bodies_bedrock_refuses(
    bedrock: FakeBedrock,
    session: aiohttp.ClientSession,
    first_party: dict[str, Any],
    betas: list[str],
    message: str,
) -> None:
    body = to_bedrock_body(b'{"max_tokens":8,"messages":[]}', betas)
    if first_party:
        body = body[:-1] + b"," + orjson.dumps(first_party)[1:]
    status, headers, raw = await post(bedrock, session, stream=True, body=body)
    assert status == 400
    assert headers["x-amzn-ErrorType"] == (
        "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )
    assert orjson.loads(raw) == {"message": message}


async def test_missing_version_and_custom_accepted_betas(session: aiohttp.ClientSession) -> None:
    async with FakeBedrock(accepted_betas={"only-this-1"}) as fake:
        status, _, raw = await post(
            fake, session, stream=False, body=b'{"max_tokens":1,"messages":[]}'
        )
        assert status == 400 and b"anthropic_version" in raw
        ok = to_bedrock_body(b'{"max_tokens":1,"messages":[]}', ["only-this-1"])
        assert (await post(fake, session, stream=False, body=ok))[0] == 200
        assert (await post(fake, session, stream=False))[0] == 400  # interleaved: not accepted here


async def test_unknown_routes_are_404(bedrock: FakeBedrock, session: aiohttp.ClientSession) -> None:
    url = f"{bedrock.url}/model/{SONNET_ID}/converse"
    signed = sign_request("POST", url, BODY, {}, CREDS, REGION)
    async with session.post(url, data=BODY, headers=signed) as resp:
        assert resp.status == 404
        assert resp.headers["x-amzn-ErrorType"].startswith("UnknownOperationException:")


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "exception", "anthropic_status"),
    [
        (bedrock_error(429), 429, "ThrottlingException", 429),
        (bedrock_error(503), 503, "ServiceUnavailableException", 529),
        (bedrock_error(500), 500, "InternalServerException", 500),
        (bedrock_error(400, message="messages: Field required"), 400, "ValidationException", 400),
        (Fault(status=429), 429, "ThrottlingException", 429),
        (bedrock_error(429, "ModelNotReadyException"), 429, "ModelNotReadyException", 529),
    ],
)
async def test_status_faults_are_bedrock_shaped(
    bedrock: FakeBedrock,
    session: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    exception: str,
    anthropic_status: int,
) -> None:
    bedrock.script(Scenario(fault=fault))
    got, headers, raw = await post(bedrock, session, stream=True)
    assert got == status
    error_type = headers["x-amzn-ErrorType"]
    assert error_type.split(":", 1)[0] == exception  # botocore keeps the part before ':'
    message = orjson.loads(raw)["message"]
    assert isinstance(message, str) and message
    if fault.error_message == "messages: Field required":
        assert message == "messages: Field required"
    assert bedrock_exception_to_anthropic(error_type, message)[0] == anthropic_status


async def test_an_html_fault_is_sent_verbatim(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    bedrock.script(Scenario(fault=Fault.html(502)))
    status, headers, raw = await post(bedrock, session, stream=False)
    assert status == 502 and headers["content-type"].startswith("text/html")
    assert raw == Fault.html(502).body


@pytest.mark.parametrize(
    ("fault", "exception", "error_type"),
    [
        (stream_exception(3, "throttlingException"), "throttlingException", "rate_limit_error"),
        (stream_exception(2, "internalServerException"), "internalServerException", "api_error"),
        (scenario_by_name("sse_error").fault, "serviceUnavailableException", "overloaded_error"),
    ],
)
async def test_mid_stream_exception_frames(
    bedrock: FakeBedrock,
    session: aiohttp.ClientSession,
    fault: Fault | None,
    exception: str,
    error_type: str,
) -> None:
    assert fault is not None and fault.error_after_events is not None
    bedrock.script(Scenario(fault=fault))
    status, _, raw = await post(bedrock, session, stream=True)
    assert status == 200
    frames = decode_frames(raw)
    after = fault.error_after_events
    assert len(frames) == after + 1
    assert frames[-1].headers == {
        ":exception-type": exception,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert frames[-1].to_response_dict()["status_code"] == 400
    decoder = EventStreamToSSE()
    out = decoder.feed(raw) + decoder.finish()
    events = stream_events(Reply(), model=SONNET, n=1)
    assert out.startswith(b"".join(events[:after]))
    assert out.endswith(b"\n\n") and decoder.error is not None
    assert decoder.error[1]["error"]["type"] == error_type


async def test_tcp_drop_after_n_events(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    bedrock.script(Scenario(fault=Fault(drop_after_events=2)))
    url = invoke_url(REGION, SONNET_ID, True, base_url=bedrock.url)
    signed = sign_request("POST", url, BODY, {}, CREDS, REGION)
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(yarl.URL(url, encoded=True), data=BODY, headers=signed) as resp:
            async for chunk in resp.content.iter_any():
                received += chunk
    assert len(decode_frames(received)) == 2


async def test_slow_first_byte(bedrock: FakeBedrock, session: aiohttp.ClientSession) -> None:
    bedrock.script(Scenario(fault=Fault(first_byte_delay=0.3)))
    started = time.monotonic()
    status, _, _ = await post(bedrock, session, stream=False)
    assert status == 200 and time.monotonic() - started >= 0.3


async def test_hang_after_events_until_the_client_leaves(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    bedrock.script(Scenario(fault=Fault(hang_after_events=1)))
    url = invoke_url(REGION, SONNET_ID, True, base_url=bedrock.url)
    signed = sign_request("POST", url, BODY, {}, CREDS, REGION)
    received = b""
    timeout = aiohttp.ClientTimeout(sock_read=0.4)
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            yarl.URL(url, encoded=True), data=BODY, headers=signed, timeout=timeout
        ) as resp:
            async for chunk in resp.content.iter_any():
                received += chunk
    assert len(decode_frames(received)) == 1
    for _ in range(100):  # the handler sees the disconnect a moment later
        if bedrock.cancelled_streams:
            break
        await asyncio.sleep(0.02)
    assert bedrock.cancelled_streams == 1 and bedrock.active_streams == 0


async def test_hang_before_headers_ends_when_the_fake_stops(session: aiohttp.ClientSession) -> None:
    fake = FakeBedrock(Scenario(fault=Fault(hang_before_headers=True)))
    await fake.start()
    task = asyncio.create_task(post(fake, session, stream=False))
    await asyncio.sleep(0.2)
    assert not task.done() and fake.active_streams == 1
    await fake.stop()
    with pytest.raises(aiohttp.ClientError):
        await task
    await fake.stop()  # idempotent


# --- bookkeeping ----------------------------------------------------------------------------


async def test_requests_are_recorded_as_sent(
    bedrock: FakeBedrock, session: aiohttp.ClientSession
) -> None:
    await post(
        bedrock, session, stream=False, headers={"X-Trace": "a", "Accept": "application/json"}
    )
    assert bedrock.invoke_requests() == bedrock.requests
    recorded = bedrock.requests[0]
    assert (recorded.method, recorded.query, recorded.body) == ("POST", "", BODY)
    ours = [
        "content-type",
        "X-Trace",
        "Accept",
        "X-Amz-Date",
        "X-Amz-Security-Token",
        "Authorization",
    ]
    names = [name for name, _ in recorded.headers if name in ours]
    assert names == ours  # wire order and case
    assert recorded.json()["anthropic_version"] == "bedrock-2023-05-31"


async def test_script_then_default_and_lifecycle(session: aiohttp.ClientSession) -> None:
    fake = FakeBedrock()
    async with fake:
        with pytest.raises(RuntimeError):
            await fake.start()
        fake.script(Scenario(fault=bedrock_error(500)), Scenario(Reply(blocks=[TextBlock("one")])))
        fake.set_default(Scenario(Reply(blocks=[TextBlock("default")])))
        results = [await post(fake, session, stream=False) for _ in range(3)]
        assert [r[0] for r in results] == [500, 200, 200]
        assert orjson.loads(results[1][2])["content"][0]["text"] == "one"
        assert orjson.loads(results[2][2])["content"][0]["text"] == "default"
        assert fake.url == f"http://127.0.0.1:{fake.port}"
