"""Anthropic SSE bytes as Bedrock's ``application/vnd.amazon.eventstream`` response.

The inverse of ``eventstream.EventStreamToSSE``, for the ``/bedrock`` ingress when the provider
behind it speaks Anthropic SSE. Each SSE event becomes the frame InvokeModelWithResponseStream
sends (protocols.md §5.5): headers ``:event-type: chunk``, ``:content-type:
application/json``, ``:message-type: event``, payload ``{"bytes":"<base64 of the event
JSON>"}`` (Bedrock's random ``p`` padding is left out: every decoder ignores it). The event
JSON is the SSE ``data`` exactly as received, except ``message_stop``, which gains
``amazon-bedrock-invocationMetrics`` (§5.7) from the usage of ``message_start`` and
``message_delta`` and the latencies measured with the injected clock.

``event: error`` becomes an exception frame (``:message-type: exception``, ``:exception-type``
from ``translate.bedrock_errors``, payload ``{"message": ...}``); nothing is sent after it, as
a Bedrock stream ends there. ``event: ping`` (Sluice's keep-alive; Bedrock itself sends none)
becomes a chunk carrying the ping JSON: the Anthropic SDKs' Bedrock decoders turn a chunk into
an SSE event named by its ``type`` and skip ``ping`` exactly as on the first-party API, while
dropping it would let idle-timeout proxies cut a quiet stream.

Framing is written here with ``struct`` and ``binascii.crc32`` (tests decode every frame with
botocore's ``EventStreamBuffer`` and the ``anthropic`` SDK's Bedrock decoder). No maintained
Python encoder fits: botocore only decodes; ``awscrt.eventstream`` exposes headers and an RPC
client connection but no standalone message encoder (and is a 4 MB native wheel);
``smithy-aws-event-stream`` has ``EventMessage.encode`` but requires Python ≥ 3.12 (its source
uses ``type`` statements) while Sluice supports 3.11.
"""

from __future__ import annotations

import binascii
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from sluice.streaming.sse import SseEvent, SseSplitter
from sluice.translate.bedrock import INVOCATION_METRICS_KEY
from sluice.translate.bedrock_errors import stream_exception_type

__all__ = ["SseToEventStream", "encode_message"]

_PRELUDE: Final = struct.Struct("!II")
_CRC: Final = struct.Struct("!I")
_STRING_HEADER: Final = struct.Struct("!BH")  # value type 7 (string), value length


def _encode_headers(headers: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += bytes([len(raw_name)]) + raw_name
        out += _STRING_HEADER.pack(7, len(raw_value)) + raw_value
    return bytes(out)


def _frame(headers: bytes, payload: bytes) -> bytes:
    """prelude (total and headers length), its CRC32, headers, payload, CRC32 of all that."""
    prelude = _PRELUDE.pack(16 + len(headers) + len(payload), len(headers))
    head = prelude + _CRC.pack(binascii.crc32(prelude)) + headers
    return head + payload + _CRC.pack(binascii.crc32(payload, binascii.crc32(head)))


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers (all Bedrock sends)."""
    return _frame(_encode_headers(headers), payload)


_CHUNK_HEADERS: Final = _encode_headers(
    {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
)
# Anthropic usage field → invocation metric (the inverse of eventstream._USAGE_FROM_METRICS).
_METRIC_FOR_USAGE: Final = (
    ("input_tokens", "inputTokenCount"),
    ("output_tokens", "outputTokenCount"),
    ("cache_read_input_tokens", "cacheReadInputTokenCount"),
    ("cache_creation_input_tokens", "cacheWriteInputTokenCount"),
)


def _chunk_frame(event_json: bytes) -> bytes:
    # Base64 is JSON-safe, so the wrapper needs no serializer.
    encoded = binascii.b2a_base64(event_json, newline=False)
    return _frame(_CHUNK_HEADERS, b'{"bytes":"' + encoded + b'"}')


def _exception_frame(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": message}))


class SseToEventStream:
    """Feed Anthropic SSE bytes in any chunking; get back whole event-stream frames.

    ``clock`` (seconds, monotonic) times ``firstByteLatency`` (the first non-empty ``feed``)
    and ``invocationLatency`` (``message_stop``) from ``started``, which defaults to the
    clock at construction; pass the request's start on the same clock to count the
    upstream's wait. After the stream, ``usage`` holds the merged Anthropic usage,
    ``invocation_metrics`` what was added to ``message_stop``, ``error`` the (Anthropic type,
    message) of an ``event: error``, and ``truncated`` whether ``finish`` found half an event.
    """

    __slots__ = (
        "_clock",
        "_first_byte",
        "_splitter",
        "_started",
        "error",
        "frames",
        "invocation_metrics",
        "truncated",
        "usage",
    )

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, started: float | None = None
    ) -> None:
        self._clock = clock
        self._started = clock() if started is None else started
        self._first_byte: float | None = None
        self._splitter = SseSplitter()
        self.usage: dict[str, int] = {}
        self.invocation_metrics: dict[str, int] | None = None
        self.error: tuple[str, str] | None = None
        self.truncated = False
        self.frames = 0

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        if self._first_byte is None:
            self._first_byte = self._clock()
        _ready, events = self._splitter.feed(chunk)
        if not events:
            return b""
        out = [self._convert(event) for event in events]
        return b"".join(out)

    def finish(self) -> bytes:
        """Nothing is left to send; an unterminated last event is dropped, as SSE does."""
        if self._splitter.pending.strip():
            self.truncated = True
        return b""

    # --- events ---------------------------------------------------------------------------

    def _convert(self, event: SseEvent) -> bytes:
        if self.error is not None or not event.data:
            return b""  # nothing follows an exception; comment-only blocks carry nothing
        name = event.name or _type_of(event.data)
        if name == b"message_stop":
            frame = _chunk_frame(self._message_stop(event.data))
        elif name == b"error":
            return self._exception(event.data)
        else:
            if name == b"message_start":
                self._take_usage(event.data, start=True)
            elif name == b"message_delta":
                self._take_usage(event.data, start=False)
            frame = _chunk_frame(event.data)
        self.frames += 1
        return frame

    def _take_usage(self, data: bytes, *, start: bool) -> None:
        try:
            event = orjson.loads(data)
            usage = event["message"]["usage"] if start else event["usage"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if isinstance(usage, dict):
            for field, _metric in _METRIC_FOR_USAGE:
                value = usage.get(field)
                if isinstance(value, int):  # message_delta's counts are cumulative
                    self.usage[field] = value

    def _message_stop(self, data: bytes) -> bytes:
        try:
            event: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
        if not isinstance(event, dict):
            return data
        now = self._clock()
        metrics = {metric: self.usage.get(field, 0) for field, metric in _METRIC_FOR_USAGE[:2]}
        metrics["invocationLatency"] = _ms(now - self._started)
        first = self._first_byte if self._first_byte is not None else now
        metrics["firstByteLatency"] = _ms(first - self._started)
        for field, metric in _METRIC_FOR_USAGE[2:]:
            metrics[metric] = self.usage.get(field, 0)
        self.invocation_metrics = metrics
        event[INVOCATION_METRICS_KEY] = metrics
        return orjson.dumps(event)

    def _exception(self, data: bytes) -> bytes:
        error_type, message = "api_error", ""
        try:
            body = orjson.loads(data)
            error = body["error"]
            error_type = str(error.get("type") or error_type)
            message = str(error.get("message") or "")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            message = data.decode("utf-8", "replace")
        self.error = (error_type, message)
        self.frames += 1
        return _exception_frame(stream_exception_type(error_type), message or error_type)


def _type_of(data: bytes) -> bytes:
    """An unnamed event's ``type`` (Anthropic always names its events; Bedrock never does)."""
    try:
        event_type = orjson.loads(data).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return b""
    return event_type.encode() if isinstance(event_type, str) else b""


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
