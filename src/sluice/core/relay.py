"""Relay an upstream response to the client, bytes unchanged, while a tap reads a copy.

Streams: response headers are committed only once the first whole event is in hand, so a
failure before that is still a proper HTTP error. After that the stream is sticky: an
upstream failure becomes an Anthropic ``event: error`` frame and the stream ends.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from sluice.base.asgi import (
    Send,
    request_id_headers,
    send_bytes,
    send_error,
    sse_error_frame,
)
from sluice.core.context import RequestContext
from sluice.core.keepalive import Keepalive
from sluice.errors import GatewayError, ProviderError
from sluice.logs import redact
from sluice.providers.base import UpstreamResponse
from sluice.streaming.chat_tap import ChatChunksTap
from sluice.streaming.eventstream_tap import EventStreamTap
from sluice.streaming.tap import AnthropicFactsObserver, SseObserver, StreamTap
from sluice.translate.openai_chat import TranslationError
from sluice.translate.openai_response import openai_to_anthropic_message

_SNIPPET = 300


def _response_headers(ctx: RequestContext, upstream: UpstreamResponse) -> list[tuple[bytes, bytes]]:
    headers = [*upstream.headers, *request_id_headers(ctx.request_id), *ctx.response_headers]
    if upstream.upstream_request_id:
        headers.append((b"upstream-request-id", upstream.upstream_request_id.encode("latin-1")))
    return headers


def _is_json(content_type: str) -> bool:
    return "json" in content_type


class MessageGuard(SseObserver, Protocol):
    """A response-side policy: sees each streamed event, or the whole non-streaming Message."""

    def check_message(self, message: Any) -> GatewayError | None: ...


async def relay(
    ctx: RequestContext,
    upstream: UpstreamResponse,
    send: Send,
    guard: MessageGuard | None = None,
    keepalive_s: float | None = None,
) -> None:
    ctx.upstream_request_id = upstream.upstream_request_id
    ctx.upstream_headers_at = time.perf_counter()
    ctx.upstream_shape = upstream.shape  # a door's way out needs it (the raw lanes)
    ok = False
    try:
        if upstream.status == 200 and (upstream.is_sse or upstream.is_event_stream):
            # A verdict ends the stream early: the upstream connection is closed, not reused.
            observers: list[SseObserver] = [guard] if guard else []
            ok = not await _relay_stream(ctx, upstream, send, observers, keepalive_s)
        else:
            await _relay_whole(ctx, upstream, send, guard)
            ok = True
    finally:
        upstream.close(not ok)


async def _relay_whole(
    ctx: RequestContext, upstream: UpstreamResponse, send: Send, guard: MessageGuard | None
) -> None:
    body = await upstream.read_all()
    ctx.status = upstream.status
    if upstream.status < 400:
        message = None
        if _is_json(upstream.content_type):
            try:  # not contextlib.suppress: no context manager object on every response
                message = orjson.loads(body)
                if upstream.shape == "openai":  # the raw lane: read a translated copy
                    message = openai_to_anthropic_message(message, model=ctx.model_sent or "")
                ctx.facts.apply_message(message)
            except (orjson.JSONDecodeError, TranslationError):
                pass
        verdict = guard.check_message(message) if guard is not None else None
        if verdict is not None:
            # The usage was consumed and is recorded; the answer itself is withheld.
            ctx.status, ctx.error_code = verdict.status, verdict.code
            await send_error(send, verdict, ctx.request_id)
            return
        if ctx.before_end is not None:
            await ctx.before_end()
        await send_bytes(send, upstream.status, body, _response_headers(ctx, upstream))
        return
    if _is_json(upstream.content_type):
        # Forwarded unmodified: Claude Code's recovery matches the upstream's wording.
        try:
            error = orjson.loads(body).get("error", {})
            ctx.error_code = str(error.get("type")) if isinstance(error, dict) else "upstream_error"
        except (orjson.JSONDecodeError, AttributeError):
            ctx.error_code = "upstream_error"
        await send_bytes(send, upstream.status, body, _response_headers(ctx, upstream))
        return
    # An HTML page (a proxy's 502, say) would be printed verbatim by Claude Code: wrap it.
    # Redacted: a proxy that echoes the request back would hand the client our credential.
    snippet = redact(body[:_SNIPPET].decode("utf-8", "replace").strip())
    err = ProviderError(
        f"Upstream {ctx.provider_id} answered HTTP {upstream.status} with a non-JSON body "
        f"({upstream.content_type or 'no content-type'}): {snippet}",
        meta={"provider": ctx.provider_id, "upstream_status": upstream.status},
    )
    ctx.error_code = err.code
    passthrough = [(k, v) for k, v in upstream.headers if k in (b"retry-after", b"x-should-retry")]
    err.headers.update({k.decode(): v.decode("latin-1") for k, v in passthrough})
    # Keep the upstream's status, so a 5xx stays retryable for the client.
    err.status = upstream.status
    await send_error(send, err, ctx.request_id)


async def _relay_stream(
    ctx: RequestContext,
    upstream: UpstreamResponse,
    send: Send,
    observers: list[SseObserver],
    keepalive_s: float | None,
) -> bool:
    """Relay a stream; True when a verdict ended it early. Pings keep a silent stream alive
    once it has started (``core/keepalive.py``)."""
    try:
        return await _relay_events(ctx, upstream, send, observers, keepalive_s)
    finally:
        await _quiet(ctx)  # a cancel or an error: no ping may follow


async def _quiet(ctx: RequestContext) -> None:
    """Stop the pings before the stream's last frame (a ping being written finishes first)."""
    alive, ctx.keepalive = ctx.keepalive, None
    if alive is not None:
        await alive.close()


async def _relay_events(
    ctx: RequestContext,
    upstream: UpstreamResponse,
    send: Send,
    observers: list[SseObserver],
    keepalive_s: float | None,
) -> bool:
    tap = _tap(ctx, upstream, [AnthropicFactsObserver(ctx.facts), *observers])
    body = upstream.body
    started = False
    try:
        async for chunk in body:
            out = tap.feed(chunk)
            if not started:
                if not out and tap.verdict is None:
                    continue
                await _start(ctx, upstream, send, keepalive_s)
                started = True
            if out:
                if (alive := ctx.keepalive) is not None:  # the pings, once the stream started
                    await alive.settle()
                    alive.sent()
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if tap.verdict is not None:
                await _quiet(ctx)
                ctx.error_code = tap.verdict.code
                frame = sse_error_frame(tap.verdict, ctx.request_id)
                await send({"type": "http.response.body", "body": frame, "more_body": False})
                return True
    except ProviderError as err:
        if not started:
            raise
        await _quiet(ctx)
        ctx.error_code = err.code
        frame = sse_error_frame(err, ctx.request_id, error_type="api_error")
        await send({"type": "http.response.body", "body": frame, "more_body": False})
        raise _StreamBroken from err
    if not started:
        raise ProviderError(
            f"Upstream {ctx.provider_id} ended the stream before sending any event.",
            meta={"provider": ctx.provider_id},
        )
    await _quiet(ctx)
    rest = tap.finish()
    if ctx.before_end is not None:
        if rest:
            await send({"type": "http.response.body", "body": rest, "more_body": True})
        await ctx.before_end()
        rest = b""
    await send({"type": "http.response.body", "body": rest, "more_body": False})
    return False


def _tap(ctx: RequestContext, upstream: UpstreamResponse, watchers: list[SseObserver]) -> Tap:
    """The raw lanes relay Bedrock's event stream or OpenAI's chunks as they are; their taps
    show the observers a translated copy."""
    if upstream.is_event_stream:
        return EventStreamTap(watchers)
    if upstream.shape == "openai":
        return ChatChunksTap(watchers, ctx.model_sent or "")
    return StreamTap(watchers)


class Tap(Protocol):
    @property
    def verdict(self) -> GatewayError | None: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


async def _start(
    ctx: RequestContext, upstream: UpstreamResponse, send: Send, keepalive_s: float | None
) -> None:
    """Commit the response's headers (the first whole event is in hand); start the pings."""
    await send(
        {"type": "http.response.start", "status": 200, "headers": _response_headers(ctx, upstream)}
    )
    ctx.status = 200
    if keepalive_s:
        ctx.keepalive = Keepalive(send, keepalive_s)


class _StreamBroken(Exception):
    """The stream failed after it started and the client was told; close the upstream hard."""


async def relay_error_safe(
    ctx: RequestContext,
    upstream: UpstreamResponse,
    send: Send,
    guard: MessageGuard | None,
    keepalive_s: float | None = None,
) -> None:
    """``relay`` that treats a post-start failure as handled (the client got an error frame)."""
    try:
        await relay(ctx, upstream, send, guard, keepalive_s)
    except _StreamBroken:
        return
