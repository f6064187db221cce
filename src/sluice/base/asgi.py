"""ASGI type aliases and writing responses on raw ASGI: JSON bodies, the error envelope,
request id headers, SSE error frames. Low in the house so every layer can render an error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from sluice.errors import GatewayError

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Scope = MutableMapping[str, Any]

JSON_CT = (b"content-type", b"application/json")

# The scope extension under which Sluice's HTTP protocol hands a request its DisconnectSignal.
DISCONNECT_EXTENSION = "sluice.disconnect"


class DisconnectSignal:
    """Per request: the server fires it when the client's connection is lost before the
    response completed. A handler registers one callback instead of keeping a task blocked
    on ``receive`` for the request's lifetime (a task per request costs ~13 µs)."""

    __slots__ = ("callback", "fired")

    def __init__(self) -> None:
        self.callback: Callable[[], None] | None = None
        self.fired = False

    def on(self, callback: Callable[[], None]) -> None:
        if self.fired:
            callback()
        else:
            self.callback = callback

    def off(self) -> None:
        self.callback = None

    def fire(self) -> None:
        self.fired = True
        callback, self.callback = self.callback, None
        if callback is not None:
            callback()


def request_id_headers(request_id: str) -> list[tuple[bytes, bytes]]:
    rid = request_id.encode("ascii")
    return [(b"request-id", rid), (b"x-request-id", rid), (b"x-langwatch-request-id", rid)]


def anthropic_error_body(err: GatewayError, request_id: str) -> dict[str, Any]:
    error: dict[str, Any] = {
        "type": err.wire_type or err.code,
        "code": err.code,
        "message": err.message,
        "param": err.param,
    }
    if err.meta:
        error["meta"] = err.meta
    if err.tips:
        error["tips"] = err.tips
    return {"type": "error", "error": error, "request_id": request_id}


def openai_error_body(err: GatewayError, request_id: str) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": err.message,
        "type": err.code,
        "param": err.param,
        "code": err.code,
    }
    if err.tips:
        error["tips"] = err.tips
    return {"error": error, "request_id": request_id}


def error_headers(err: GatewayError) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-langwatch-handled-error", err.code.encode("ascii"))]
    if err.should_retry is not None:
        headers.append((b"x-should-retry", b"true" if err.should_retry else b"false"))
    headers.extend(
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items()
    )
    return headers


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode("ascii"))],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    request_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [JSON_CT, *request_id_headers(request_id), *(extra or [])]
    await send_bytes(send, status, orjson.dumps(payload), headers)


async def send_error(
    send: Send, err: GatewayError, request_id: str, *, openai_shape: bool = False
) -> None:
    body = (
        openai_error_body(err, request_id)
        if openai_shape
        else anthropic_error_body(err, request_id)
    )
    await send_json(send, err.status, body, request_id, error_headers(err))


def sse_error_frame(err: GatewayError, request_id: str, error_type: str | None = None) -> bytes:
    """An Anthropic ``event: error`` frame, for failures after the stream has started (the
    HTTP status is already 200 then). ``error_type`` overrides the type the SDKs map on."""
    body = anthropic_error_body(err, request_id)
    if error_type is not None:
        body["error"]["type"] = error_type
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
