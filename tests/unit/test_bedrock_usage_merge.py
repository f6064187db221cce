"""Bedrock usage merge: fields the stream's message_delta lacks come from the invocation
metrics in message_stop (protocols.md §5.7); fields it has are never overwritten."""

from __future__ import annotations

import re

import orjson

from sluice.streaming.eventstream import EventStreamToSSE
from sluice.testing.fake_bedrock import chunk_frame, exception_frame

START = {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 30}}}
METRICS = {
    "inputTokenCount": 30,
    "outputTokenCount": 7,
    "cacheReadInputTokenCount": 1000,
    "cacheWriteInputTokenCount": 200,
}


def _events(raw: bytes) -> list[tuple[bytes, dict[str, object]]]:
    return [(n, orjson.loads(d)) for n, d in re.findall(rb"event: (\S+)\ndata: (.*)\n\n", raw)]


def test_delta_is_held_then_merged() -> None:
    t = EventStreamToSSE()
    assert _events(t.feed(chunk_frame(orjson.dumps(START))))[0][0] == b"message_start"
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 7},
    }
    assert t.feed(chunk_frame(orjson.dumps(delta))) == b""  # held for the next frame
    stop = {"type": "message_stop", "amazon-bedrock-invocationMetrics": METRICS}
    out = _events(t.feed(chunk_frame(orjson.dumps(stop))) + t.finish())
    assert [n for n, _ in out] == [b"message_delta", b"message_stop"]
    assert out[0][1]["usage"] == {
        "output_tokens": 7,
        "input_tokens": 30,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
    }
    assert out[1][1] == {"type": "message_stop"}


def test_present_fields_win_and_bytes_stay() -> None:
    t = EventStreamToSSE(strip_invocation_metrics=False)
    usage = {
        "input_tokens": 1,
        "output_tokens": 2,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 4,
    }
    delta = orjson.dumps({"type": "message_delta", "delta": {}, "usage": usage})
    t.feed(chunk_frame(delta))
    stop = {"type": "message_stop", "amazon-bedrock-invocationMetrics": METRICS}
    out = t.feed(chunk_frame(orjson.dumps(stop)))
    assert out.startswith(b"event: message_delta\ndata: " + delta + b"\n\n")


def test_held_delta_is_released_before_an_error_and_at_the_end() -> None:
    t = EventStreamToSSE()
    t.feed(chunk_frame(b'{"type":"message_delta","delta":{},"usage":{"output_tokens":1}}'))
    out = _events(t.feed(exception_frame("throttlingException", "slow down")))
    assert [n for n, _ in out] == [b"message_delta", b"error"]
    t2 = EventStreamToSSE()
    t2.feed(chunk_frame(b'{"type":"message_delta","delta":{},"usage":{"output_tokens":1}}'))
    assert t2.finish().startswith(b"event: message_delta")
