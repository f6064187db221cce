"""Anthropic SSE → Bedrock event stream: every frame decodes with botocore, with Sluice's own
EventStreamToSSE and with the anthropic SDK's Bedrock decoder and client, in any chunking."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import orjson
import pytest
from anthropic import AnthropicBedrock, APIStatusError
from anthropic.lib.bedrock._stream_decoder import AWSEventStreamDecoder
from botocore.eventstream import EventStreamBuffer, EventStreamMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.streaming.eventstream import EventStreamToSSE
from sluice.streaming.eventstream_encode import SseToEventStream, encode_message
from sluice.testing.fake_bedrock import encode_frame
from sluice.testing.scenarios import (
    FakeUsage,
    Reply,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    scenario_by_name,
    sse_event,
    stream_events,
)
from sluice.translate.bedrock import INVOCATION_METRICS_KEY

MODEL = "claude-sonnet-4-5-20250929"
CHUNK_HEADERS = {
    ":event-type": "chunk",
    ":content-type": "application/json",
    ":message-type": "event",
}
KEEPALIVE_PING = b'event: ping\ndata: {"type": "ping"}\n\n'  # core/keepalive.PING

REPLIES = [
    Reply(),
    scenario_by_name("tool_bash").reply,
    scenario_by_name("thinking").reply,
    Reply(
        blocks=[
            TextBlock('héllo \u2028 wörld\n"q"', chunks=4),
            ToolUseBlock("Read", {"p": "/x"}, id="toolu_1"),
        ],
        usage=FakeUsage(cache_read_input_tokens=2048, cache_creation_5m=512, cache_creation_1h=256),
        pings=False,
    ),
    Reply(blocks=[ThinkingBlock("hmm", chunks=1)], model="claude-opus-4-8", message_id="msg_x"),
]


class Clock:
    def __init__(self, *times: float) -> None:
        self._times = iter(times)

    def __call__(self) -> float:
        return next(self._times)


def _sse(reply: Reply, n: int = 1, *, ping: bool = False) -> list[bytes]:
    events = stream_events(reply, model=MODEL, n=n)
    return [events[0], KEEPALIVE_PING, *events[1:]] if ping else list(events)


def _decode(wire: bytes) -> list[EventStreamMessage]:
    buffer = EventStreamBuffer()
    buffer.add_data(wire)
    return list(buffer)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def _encode(pieces: list[bytes], **kwargs: Any) -> tuple[bytes, SseToEventStream]:
    encoder = SseToEventStream(**kwargs)
    return b"".join(encoder.feed(p) for p in pieces) + encoder.finish(), encoder


def _data(sse: bytes) -> bytes:
    return sse.split(b"\ndata: ", 1)[1][:-2]


# --- framing --------------------------------------------------------------------------------


def test_encode_message_is_byte_identical_to_the_fakes_framing() -> None:
    for headers, payload in [(CHUNK_HEADERS, b'{"bytes":"e30="}'), ({}, b""), ({"a": "é"}, b"x")]:
        assert encode_message(headers, payload) == encode_frame(headers, payload)
        (message,) = _decode(encode_message(headers, payload))
        assert (message.headers, bytes(message.payload)) == (headers, payload)


def test_each_event_is_one_chunk_frame_carrying_its_exact_json() -> None:
    sse = _sse(Reply(), ping=True)
    wire, encoder = _encode([b"".join(sse)])
    messages = _decode(wire)
    assert len(messages) == len(sse) == encoder.frames
    for message, event in zip(messages, sse, strict=True):
        assert message.headers == CHUNK_HEADERS
        assert message.to_response_dict()["status_code"] == 200
        wrapper = orjson.loads(bytes(message.payload))
        assert list(wrapper) == ["bytes"]
        carried = base64.b64decode(wrapper["bytes"], validate=True)
        if event.startswith(b"event: message_stop"):
            stop = orjson.loads(carried)
            assert stop.pop(INVOCATION_METRICS_KEY) == encoder.invocation_metrics
            assert stop == orjson.loads(_data(event))
        else:
            assert carried == _data(event)  # not re-serialized: the same bytes


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(range(len(REPLIES))),
    st.integers(1, 9),
    st.lists(st.integers(0, 10**6), max_size=40),
)
def test_any_chunking_gives_the_same_frames_and_round_trips(
    index: int, n: int, cuts: list[int]
) -> None:
    sse = b"".join(_sse(REPLIES[index], n, ping=True))
    clock = (0.0, 0.1, 0.5)  # start, first byte, message_stop
    whole, _ = _encode([sse], clock=Clock(*clock))
    pieces, encoder = _encode(_split(sse, cuts), clock=Clock(*clock))
    assert pieces == whole
    decoder = EventStreamToSSE()  # Sluice's own Bedrock → SSE decoder gives the input back
    out = b"".join(decoder.feed(p) for p in _split(whole, cuts[::-1])) + decoder.finish()
    assert out == sse
    assert decoder.invocation_metrics == encoder.invocation_metrics
    assert not decoder.truncated and decoder.error is None


def test_byte_by_byte_equals_whole() -> None:
    sse = b"".join(_sse(REPLIES[3], 2, ping=True))
    whole, _ = _encode([sse], clock=Clock(0.0, 0.1, 0.5))
    bytewise, _ = _encode([sse[i : i + 1] for i in range(len(sse))], clock=Clock(0.0, 0.1, 0.5))
    assert bytewise == whole


def test_frames_leave_as_soon_as_their_event_is_complete() -> None:
    first, second = _sse(Reply())[:2]
    encoder = SseToEventStream()
    assert encoder.feed(first[:-1]) == b""
    assert len(_decode(encoder.feed(first[-1:] + second[:5]))) == 1
    assert len(_decode(encoder.feed(second[5:]))) == 1


# --- invocation metrics ---------------------------------------------------------------------


def test_message_stop_gains_bedrocks_invocation_metrics() -> None:
    reply = REPLIES[3]
    wire, encoder = _encode([b"".join(_sse(reply))], clock=Clock(10.0, 10.25, 11.5))
    stop = orjson.loads(base64.b64decode(orjson.loads(bytes(_decode(wire)[-1].payload))["bytes"]))
    usage = reply.usage
    metrics = {
        "inputTokenCount": usage.input_tokens,
        "outputTokenCount": usage.output_tokens,
        "invocationLatency": 1500,
        "firstByteLatency": 250,
        "cacheReadInputTokenCount": 2048,
        "cacheWriteInputTokenCount": 768,
    }
    assert stop == {"type": "message_stop", INVOCATION_METRICS_KEY: metrics}
    assert encoder.invocation_metrics == metrics
    assert encoder.usage["cache_read_input_tokens"] == 2048


def test_caller_passes_the_request_start() -> None:
    sse = b"".join(_sse(Reply()))
    _wire, encoder = _encode([sse], clock=Clock(3.0, 4.0), started=1.0)
    assert encoder.invocation_metrics is not None
    assert encoder.invocation_metrics["firstByteLatency"] == 2000
    assert encoder.invocation_metrics["invocationLatency"] == 3000


def test_message_delta_usage_overrides_message_start() -> None:
    start = sse_event(
        "message_start",
        {"type": "message_start", "message": {"usage": {"input_tokens": 7, "output_tokens": 1}}},
    )
    delta = sse_event("message_delta", {"type": "message_delta", "usage": {"output_tokens": 42}})
    stop = sse_event("message_stop", {"type": "message_stop"})
    _wire, encoder = _encode([start + delta + stop])
    metrics = encoder.invocation_metrics
    assert metrics is not None
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == (7, 42)
    assert metrics["cacheReadInputTokenCount"] == metrics["cacheWriteInputTokenCount"] == 0


# --- the anthropic SDK's Bedrock decoder and client -----------------------------------------


def test_the_sdk_decoder_yields_the_same_events() -> None:
    sse = _sse(REPLIES[1], 2, ping=True)
    wire, _ = _encode([b"".join(sse)])
    got = list(AWSEventStreamDecoder().iter_bytes(iter(_split(wire, [7, 100, 101, 5000]))))
    assert [e.event for e in got] == [e.split(b"\n", 1)[0][7:].decode() for e in sse]
    for event, original in zip(got[:-1], sse[:-1], strict=True):
        assert event.data.encode() == _data(original)
    assert INVOCATION_METRICS_KEY in json.loads(got[-1].data)


def _client(wire: bytes) -> AnthropicBedrock:
    def answer(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path.endswith("/invoke-with-response-stream")
        headers = {"content-type": "application/vnd.amazon.eventstream"}
        return httpx2.Response(200, headers=headers, content=wire)

    return AnthropicBedrock(
        api_key="bedrock-api-key",  # bearer auth: no boto3 session needed
        aws_region="us-east-1",
        base_url="http://sluice.test/bedrock",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )


def _stream(client: AnthropicBedrock) -> Iterator[Any]:
    return iter(
        client.messages.create(
            model="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            max_tokens=50,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    )


def test_the_sdk_client_streams_the_message_and_skips_pings() -> None:
    reply = scenario_by_name("tool_bash").reply
    sse = _sse(reply, ping=True)
    wire, _ = _encode([b"".join(sse)])
    events = list(_stream(_client(wire)))
    names = [e.split(b"\n", 1)[0][7:].decode() for e in sse]
    assert [e.type for e in events] == [n for n in names if n != "ping"]
    assert events[-2].usage.output_tokens == reply.usage.output_tokens


@pytest.mark.parametrize(
    ("error_type", "exception_type", "back"),
    [
        ("overloaded_error", "serviceUnavailableException", "overloaded_error"),
        ("rate_limit_error", "throttlingException", "rate_limit_error"),
        ("api_error", "internalServerException", "api_error"),
        ("invalid_request_error", "validationException", "invalid_request_error"),
        ("timeout_error", "modelTimeoutException", "timeout_error"),
        ("permission_error", "internalServerException", "api_error"),
    ],
)
def test_an_error_event_becomes_an_exception_frame(
    error_type: str, exception_type: str, back: str
) -> None:
    sse = _sse(Reply())[:3]
    error = {"type": "error", "error": {"type": error_type, "message": "Overloaded ✓"}}
    after = sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
    wire, encoder = _encode([b"".join(sse) + sse_event("error", error) + after])
    messages = _decode(wire)
    assert len(messages) == 4 == encoder.frames  # nothing after the exception
    last = messages[-1]
    assert last.headers == {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert orjson.loads(bytes(last.payload)) == {"message": "Overloaded ✓"}
    assert last.to_response_dict()["status_code"] == 400
    assert encoder.error == (error_type, "Overloaded ✓")

    decoder = EventStreamToSSE()
    out = decoder.feed(wire) + decoder.finish()
    back_body = {"type": "error", "error": {"type": back, "message": "Overloaded ✓"}}
    assert out == b"".join(sse) + sse_event("error", back_body)

    sdk = list(AWSEventStreamDecoder().iter_bytes(iter([wire])))
    assert sdk[-1].event == "error"
    assert json.loads(sdk[-1].data)["error"]["type"] == exception_type

    with pytest.raises(APIStatusError):
        list(_stream(_client(wire)))


# --- odd input ------------------------------------------------------------------------------


def test_crlf_comments_and_unnamed_events() -> None:
    start = _data(_sse(Reply())[0])
    crlf = b": comment\r\n\r\nevent: message_start\r\ndata: " + start + b"\r\n\r\n"
    unnamed = b'data: {"type":"content_block_stop","index":0}\n\n'
    wire, encoder = _encode([crlf + unnamed])
    messages = _decode(wire)
    carried = [base64.b64decode(orjson.loads(bytes(m.payload))["bytes"]) for m in messages]
    assert carried == [start, b'{"type":"content_block_stop","index":0}']
    assert encoder.usage["input_tokens"] == 25


def test_a_stream_ending_inside_an_event_drops_it() -> None:
    first, second = _sse(Reply())[:2]
    wire, encoder = _encode([first + second[:-3]])
    assert len(_decode(wire)) == 1
    assert encoder.truncated
    _wire, clean = _encode([first + b"\n"])
    assert not clean.truncated


def test_empty_feeds_and_no_metrics_without_message_stop() -> None:
    encoder = SseToEventStream()
    assert encoder.feed(b"") == b""
    assert encoder.finish() == b""
    assert encoder.invocation_metrics is None and encoder.frames == 0
