"""Reading requests on raw ASGI: headers, credentials, and a size-capped body."""

from __future__ import annotations

from sluice.base.asgi import Receive, Scope
from sluice.errors import PayloadTooLarge


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body exceeds the gateway limit of {limit} bytes.",
        meta={"max_body_bytes": limit},
        tips=["Raise server.max_body_bytes, or run /compact to shorten the conversation."],
    )


def check_content_length(scope: Scope, limit: int) -> None:
    """Refuse a declared oversize body before reading a byte of it (and before auth)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                return
            if declared > limit:
                raise _too_large(limit)
            return


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the whole body, refusing more than ``limit`` bytes even without a Content-Length."""
    first = await receive()
    body = first.get("body", b"")
    if not first.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return bytes(body)
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def presented_key(scope: Scope) -> tuple[str | None, str | None]:
    """(key, scheme). Bearer wins when both Authorization and x-api-key are sent."""
    bearer: str | None = None
    api_key: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization" and bearer is None:
            text = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                bearer = text[7:].strip()
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1").strip()
    if bearer:
        return bearer, "bearer"
    if api_key:
        return api_key, "x-api-key"
    return None, None


def has_header(scope: Scope, name: bytes) -> bool:
    return any(k == name for k, _ in scope["headers"])
