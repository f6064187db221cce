"""What the translating providers share: opening a request within the header timeout, and
shaping their responses (translated streams, whole bodies, Anthropic JSON errors)."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp.payload import TOO_LARGE_BYTES_BODY, BytesPayload
from yarl import URL

from sluice.base.lazy_timers import LazyTimers
from sluice.errors import ProviderError, ProviderTimeout
from sluice.providers.base import ModelInfo, UpstreamResponse, display_name_for
from sluice.providers.headers import downstream_headers
from sluice.streaming.idle import IdleWatch, StreamIdle

TRANSPORT_ERRORS = (aiohttp.ClientError, OSError)
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
# Upstream response headers a client may act on; everything else is the upstream's business.
_KEPT = ("retry-after", "x-should-retry")


def body_payload(body: bytes) -> bytes | BytesPayload:
    """aiohttp warns on bodies over 1 MiB sent as bytes; Claude Code sends up to 32 MB. The
    bytes are written to the socket buffer in one go either way, so build the payload
    ourselves with that warning muted (synchronously: no other task runs meanwhile)."""
    if len(body) <= TOO_LARGE_BYTES_BODY:
        return body
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return BytesPayload(body, content_type="application/json")


class StreamTranslator(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


def request_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """All values of a client request header (``name`` lower-case), joined as one list."""
    values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
    return ",".join(values) if values else None


def beta_table(
    defaults: Mapping[str, str | None], overrides: Mapping[str, str | None], use_defaults: bool
) -> dict[str, str | None]:
    """A provider's beta allowlist: its config's entries over the kind's defaults."""
    return {**(defaults if use_defaults else {}), **overrides}


def listed_models(
    declared: list[str] | None, model_map: Mapping[str, str], defaults: Mapping[str, str]
) -> list[ModelInfo]:
    """What /v1/models shows for a translating provider: its declared models, else every
    Anthropic id it can map (config first, then the kind's defaults)."""
    names = declared if declared is not None else [*model_map, *defaults]
    return [ModelInfo(m, display_name_for(m)) for m in dict.fromkeys(names)]


def client_timeout(connect_timeout_ms: int) -> aiohttp.ClientTimeout:
    connect = connect_timeout_ms / 1000
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect)


async def open_request(
    session: aiohttp.ClientSession,
    provider_id: str,
    url: str | URL,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeouts: aiohttp.ClientTimeout,
    header_timeout_s: float,
    timers: LazyTimers,
) -> aiohttp.ClientResponse:
    """POST and wait for the response headers; no headers in time is ``ProviderTimeout``,
    no connection is ``ProviderError`` (both may fall back to another provider)."""
    try:
        with timers.timeout(header_timeout_s):
            return await session.request(
                "POST",
                url,
                data=body_payload(body),
                headers=dict(headers),
                skip_auto_headers=("User-Agent", "Accept", "Content-Type"),
                allow_redirects=False,
                timeout=timeouts,
            )
    except TimeoutError as exc:
        raise ProviderTimeout(
            f"Upstream {provider_id} sent no response headers within {header_timeout_s:g}s.",
            meta={"provider": provider_id},
        ) from exc
    except TRANSPORT_ERRORS as exc:
        raise ProviderError(
            f"Could not reach upstream {provider_id}: {type(exc).__name__}: {exc}",
            meta={"provider": provider_id},
            tips=[f"Check providers.{provider_id}.base_url and that the upstream is up."],
        ) from exc


async def read_body(resp: aiohttp.ClientResponse, provider_id: str) -> bytes:
    try:
        return await resp.read()
    except TRANSPORT_ERRORS as exc:
        raise ProviderError(
            f"Upstream {provider_id} connection lost while reading the response: "
            f"{type(exc).__name__}",
            meta={"provider": provider_id},
        ) from exc
    finally:
        resp.release()


def kept_headers(resp: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    kept = ((name, value) for name in _KEPT if (value := resp.headers.get(name)))
    return downstream_headers(
        (name.encode("ascii"), value.encode("latin-1")) for name, value in kept
    )


def _closer(resp: aiohttp.ClientResponse) -> Callable[[bool], None]:
    def close(abort: bool) -> None:
        if abort:
            resp.close()
        else:
            resp.release()

    return close


def whole_response(
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    upstream_request_id: str | None,
    content_type: str = JSON_CONTENT_TYPE,
) -> UpstreamResponse:
    """A response whose body is already in hand (a translated Message, an error)."""

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    async def read_all() -> bytes:
        return body

    return UpstreamResponse(
        status=status,
        headers=[(b"content-type", content_type.encode()), *headers],
        content_type=content_type,
        body=chunks(),
        read_all=read_all,
        close=lambda _abort: None,
        upstream_request_id=upstream_request_id,
    )


def error_response(
    status: int,
    payload: dict[str, Any],
    resp: aiohttp.ClientResponse,
    upstream_request_id: str | None,
) -> UpstreamResponse:
    """An Anthropic JSON error in place of the upstream's, keeping ``retry-after``."""
    return whole_response(status, orjson.dumps(payload), kept_headers(resp), upstream_request_id)


class StreamIdleTimeout(ProviderError):
    """The upstream went silent mid-response for ``stream_idle_timeout_s``."""

    http_status = 504
    code = "stream_idle_timeout"


async def upstream_chunks(
    resp: aiohttp.ClientResponse, provider_id: str, idle_s: float
) -> AsyncIterator[bytes]:
    """The response body as it arrives. A broken connection is ``ProviderError``; no byte
    for ``idle_s`` while waiting for one is ``StreamIdleTimeout`` (``streaming/idle.py``)."""
    content = resp.content
    watch = IdleWatch(content, idle_s)
    try:
        while True:
            watch.reading()
            chunk = await content.readany()
            watch.idle()
            if not chunk:
                return
            yield chunk
    except StreamIdle as exc:
        raise StreamIdleTimeout(
            f"Upstream {provider_id} sent nothing for {idle_s:g}s mid-response "
            f"(providers.{provider_id}.stream_idle_timeout_s).",
            meta={"provider": provider_id},
        ) from exc
    except TRANSPORT_ERRORS as exc:
        raise ProviderError(
            f"Upstream {provider_id} connection lost mid-response: {type(exc).__name__}",
            meta={"provider": provider_id},
        ) from exc
    finally:
        watch.close()


def translated_stream(
    resp: aiohttp.ClientResponse,
    translator: StreamTranslator,
    provider_id: str,
    upstream_request_id: str | None,
    *,
    idle_s: float,
) -> UpstreamResponse:
    """Translate the upstream's stream chunk by chunk, in the relay's own task: each chunk's
    events go out as soon as it is read; nothing is buffered beyond an incomplete frame."""

    async def body() -> AsyncIterator[bytes]:
        async for chunk in upstream_chunks(resp, provider_id, idle_s):
            out = translator.feed(chunk)
            if out:
                yield out
        rest = translator.finish()
        if rest:
            yield rest

    async def read_all() -> bytes:
        return b"".join([chunk async for chunk in body()])

    headers = [
        (b"content-type", SSE_CONTENT_TYPE.encode()),
        (b"cache-control", b"no-cache"),
        *kept_headers(resp),
    ]
    return UpstreamResponse(
        status=200,
        headers=headers,
        content_type=SSE_CONTENT_TYPE,
        body=body(),
        read_all=read_all,
        close=_closer(resp),
        upstream_request_id=upstream_request_id,
    )


def relayed(
    resp: aiohttp.ClientResponse,
    provider_id: str,
    headers: list[tuple[bytes, bytes]],
    upstream_request_id: str | None,
    *,
    idle_s: float,
) -> UpstreamResponse:
    """The upstream's body as it is, chunk by chunk, with ``headers`` for the client."""

    def body() -> AsyncIterator[bytes]:
        return upstream_chunks(resp, provider_id, idle_s)

    async def read_all() -> bytes:
        return await read_body(resp, provider_id)

    return UpstreamResponse(
        status=resp.status,
        headers=headers,
        content_type=resp.headers.get("content-type", ""),
        body=body(),
        read_all=read_all,
        close=_closer(resp),
        upstream_request_id=upstream_request_id,
    )


def passthrough(
    resp: aiohttp.ClientResponse,
    provider_id: str,
    upstream_request_id: str | None,
    *,
    idle_s: float,
) -> UpstreamResponse:
    """The upstream's body as it is (Vertex relays Anthropic's own SSE and JSON); of its
    headers only those a client acts on."""
    content_type = resp.headers.get("content-type", "")
    headers = [(b"content-type", content_type.encode("latin-1")), *kept_headers(resp)]
    if content_type.startswith("text/event-stream"):
        headers.append((b"cache-control", b"no-cache"))
    return relayed(resp, provider_id, headers, upstream_request_id, idle_s=idle_s)
