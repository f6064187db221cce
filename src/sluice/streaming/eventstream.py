"""Bedrock's ``application/vnd.amazon.eventstream`` response as Anthropic SSE bytes.

InvokeModelWithResponseStream wraps each Anthropic stream event in a binary frame
(protocols.md §5.5): a ``chunk`` event whose JSON payload carries the event as base64 in
``bytes``. Framing, CRCs and header parsing are botocore's ``EventStreamBuffer``; this module
only turns each decoded frame into the SSE event the first-party API would have sent:
``event: <type>`` plus the event JSON exactly as Bedrock encoded it. The one exception is
``message_stop``, which Bedrock extends with ``amazon-bedrock-invocationMetrics`` (§5.7): that
key is cut out (and kept on ``invocation_metrics``) unless ``strip_invocation_metrics`` is off.
Usage is merged (§5.7): ``message_delta`` is held until the next frame, and when that is a
``message_stop`` with metrics, usage fields the delta lacks are filled in from them.
Exception and error frames become an SSE ``error`` event (§3.5), since the 200 is already sent.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from sluice.errors import ProviderError
from sluice.translate.bedrock import INVOCATION_METRICS_KEY, bedrock_exception_to_anthropic

__all__ = ["EventStreamToSSE"]


def _sse(event_type: bytes, data: bytes) -> bytes:
    return b"event: " + event_type + b"\ndata: " + data + b"\n\n"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class EventStreamToSSE:
    """Feed raw response bytes in any chunking; get back whole SSE events.

    ``feed`` returns the SSE bytes for every frame completed by the chunk (often ``b""``);
    ``finish`` checks that the stream did not end inside a frame. A corrupt frame (bad CRC,
    bad lengths) or a truncated end raises ``ProviderError`` and sets ``truncated`` for the
    latter. After an exception frame, ``error`` holds its (status, Anthropic error body).
    """

    def __init__(self, *, strip_invocation_metrics: bool = True) -> None:
        self._buffer = EventStreamBuffer()
        self._strip = strip_invocation_metrics
        self._pending = 0  # bytes fed but not yet part of a complete frame
        self.invocation_metrics: dict[str, Any] | None = None
        self.error: tuple[int, dict[str, Any]] | None = None
        self.truncated = False
        self.frames = 0
        self._held: tuple[dict[str, Any], bytes] | None = None  # message_delta, its JSON

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        self._buffer.add_data(chunk)
        self._pending += len(chunk)
        out: list[bytes] = []
        try:
            for message in self._buffer:
                self._pending -= int(message.prelude.total_length)
                self.frames += 1
                out.append(self._convert(message))
        except ParserError as exc:
            raise ProviderError(f"Bedrock sent a corrupt event-stream frame: {exc}") from exc
        return b"".join(out)

    def finish(self) -> bytes:
        if self._pending:
            self.truncated = True
            raise ProviderError(
                f"Bedrock event stream ended inside a frame ({self._pending} bytes pending)"
            )
        return self._release()

    def _release(self) -> bytes:
        """The held message_delta (if any), with usage merged from the invocation metrics."""
        if self._held is None:
            return b""
        event, data = self._held
        self._held = None
        usage = event.get("usage")
        metrics = self.invocation_metrics
        if isinstance(usage, dict) and metrics:
            filled = False
            for field, metric in _USAGE_FROM_METRICS:
                value = metrics.get(metric)
                if usage.get(field) is None and isinstance(value, int):
                    usage[field] = value
                    filled = True
            if filled:
                data = orjson.dumps(event)
        return _sse(b"message_delta", data)

    # --- frames ---------------------------------------------------------------------------

    def _convert(self, message: EventStreamMessage) -> bytes:
        headers = message.headers
        kind = headers.get(":message-type")
        if kind == "event":
            if headers.get(":event-type") != "chunk":
                return b""  # not in the ResponseStream union today; tolerate like the SDK
            return self._chunk(bytes(message.payload))
        if kind == "exception":
            name = _text(headers.get(":exception-type")) or "internalServerException"
            return self._error(name, _exception_message(bytes(message.payload)))
        if kind == "error":
            code = _text(headers.get(":error-code")) or "internalServerException"
            return self._error(code, _text(headers.get(":error-message")))
        return b""

    def _chunk(self, payload: bytes) -> bytes:
        try:
            wrapper = orjson.loads(payload)
            data = base64.b64decode(wrapper["bytes"], validate=True)
            event = orjson.loads(data)
            event_type = event["type"]
        except (orjson.JSONDecodeError, binascii.Error, KeyError, TypeError) as exc:
            raise ProviderError(f"Bedrock sent an unreadable chunk event: {exc}") from exc
        if not isinstance(event_type, str):
            raise ProviderError("Bedrock sent a chunk event without a string type")
        if event_type == "message_stop" and INVOCATION_METRICS_KEY in event:
            metrics = event[INVOCATION_METRICS_KEY]
            self.invocation_metrics = metrics if isinstance(metrics, dict) else None
            if self._strip:
                del event[INVOCATION_METRICS_KEY]
                data = orjson.dumps(event)
        if b"\n" in data or b"\r" in data:
            data = orjson.dumps(event)  # one SSE data line: never pass raw newlines through
        held = self._release()
        if event_type == "message_delta":
            self._held = (event, data)
            return held
        return held + _sse(event_type.encode(), data)

    def _error(self, exception_type: str, message: str) -> bytes:
        status, body = bedrock_exception_to_anthropic(exception_type, message)
        self.error = (status, body)
        return self._release() + _sse(b"error", orjson.dumps(body))


# Anthropic usage field ← invocation metric, used only where the stream's usage lacks it.
_USAGE_FROM_METRICS = (
    ("input_tokens", "inputTokenCount"),
    ("output_tokens", "outputTokenCount"),
    ("cache_read_input_tokens", "cacheReadInputTokenCount"),
    ("cache_creation_input_tokens", "cacheWriteInputTokenCount"),
)


def _exception_message(payload: bytes) -> str:
    """``{"message": ...}`` (plus ``originalMessage`` for modelStreamErrorException)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")
    if not isinstance(body, dict):
        return ""
    message = _text(body.get("message") or body.get("Message"))
    original = _text(body.get("originalMessage"))
    return f"{message} ({original})" if original and original not in message else message
