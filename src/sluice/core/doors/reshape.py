"""The way out of a door: the pipeline answers in Anthropic's shapes (a Message, an SSE
stream, an error envelope); a door's ``Reshape`` turns each into its own wire shape.

``reshaping_send`` wraps the ASGI ``send`` of one request. A 200 event stream is reshaped
as it flows, chunk by chunk (no task, no buffering beyond the reshaper's own partial event);
any other response (a whole Message, a count, an error) is held until its last byte, then
reshaped whole and sent with its new length. The native Messages door uses none of this: its
responses are relayed byte for byte.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol

from sluice.base.asgi import Send

Headers = list[tuple[bytes, bytes]]


class Reshape(Protocol):
    def stream_start(self, headers: Headers) -> Headers:
        """The headers of a 200 stream (its content type, say)."""
        ...

    def stream_chunk(self, chunk: bytes) -> bytes:
        """Whole or partial Anthropic SSE events in; the door's bytes out (maybe none yet)."""
        ...

    def stream_end(self) -> bytes:
        """The stream's last bytes, once the pipeline sent its last."""
        ...

    def whole(self, status: int, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        """Any response that is not a 200 stream: a Message, a token count, an error."""
        ...


_STREAMS = (b"text/event-stream", b"application/vnd.amazon.eventstream")


def is_stream(headers: Headers) -> bool:
    """Anthropic SSE, or (the raw Bedrock lane) Bedrock's own event stream."""
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(_STREAMS)
    return False


def without(headers: Headers, *names: bytes) -> Headers:
    return [(k, v) for k, v in headers if k not in names]


def reshaping_send(send: Send, reshape: Reshape) -> Send:
    """``send`` as the door's client must see it."""
    held: MutableMapping[str, Any] | None = None
    parts: list[bytes] = []
    streaming = False

    async def reshaped(message: MutableMapping[str, Any]) -> None:
        nonlocal held, streaming
        if message["type"] == "http.response.start":
            headers = message.get("headers", [])
            if message["status"] == 200 and is_stream(headers):
                streaming = True
                headers = reshape.stream_start(without(headers, b"content-length"))
                await send({"type": "http.response.start", "status": 200, "headers": headers})
            else:
                held = message
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        more = message.get("more_body", False)
        if streaming:
            out = reshape.stream_chunk(message.get("body", b""))
            if not more:
                out += reshape.stream_end()
            if out or not more:
                await send({"type": "http.response.body", "body": out, "more_body": more})
            return
        parts.append(message.get("body", b""))
        if more or held is None:
            return
        status, headers, body = reshape.whole(
            held["status"], without(held.get("headers", []), b"content-length"), b"".join(parts)
        )
        length = (b"content-length", str(len(body)).encode("ascii"))
        await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return reshaped
