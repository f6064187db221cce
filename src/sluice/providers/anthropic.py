"""Anthropic first-party API: the raw lane.

Request bytes go upstream unchanged (the caller may have spliced ``model``); headers are
forwarded as sent minus credentials; the provider key replaces the virtual key. Response
bytes come back unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import orjson
from aiohttp.payload import TOO_LARGE_BYTES_BODY, BytesPayload

from sluice.config.models import ProviderConfig
from sluice.errors import ProviderError, ProviderTimeout
from sluice.providers.base import ModelInfo, UpstreamResponse
from sluice.providers.headers import downstream_headers, upstream_headers

if TYPE_CHECKING:
    from sluice.core.context import RequestContext

log = logging.getLogger("sluice.providers.anthropic")

_MODELS_TTL_S = 600.0
_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError)


def body_payload(body: bytes) -> bytes | BytesPayload:
    """aiohttp warns on bodies over 1 MiB sent as bytes; Claude Code sends up to 32 MB. The
    bytes are written to the socket buffer in one go either way, so build the payload
    ourselves with that warning muted (synchronously: no other task runs meanwhile)."""
    if len(body) <= TOO_LARGE_BYTES_BODY:
        return body
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return BytesPayload(body, content_type="application/json")


def display_name_for(model_id: str) -> str:
    """``claude-opus-4-8`` -> ``Claude Opus 4.8``; dated ids keep their date out of the name."""
    parts = [p for p in model_id.split("-") if not (p.isdigit() and len(p) == 8)]
    words: list[str] = []
    for part in parts:
        if part.isdigit() and words and words[-1][-1:].isdigit():
            words[-1] += f".{part}"
        else:
            words.append(part.capitalize() if not part.isdigit() else part)
    return " ".join(words)


class AnthropicProvider:
    kind = "anthropic"
    native_anthropic = True

    def __init__(
        self, provider_id: str, config: ProviderConfig, session: aiohttp.ClientSession
    ) -> None:
        self.id = provider_id
        self._config = config
        self._session = session
        self._base = config.base_url
        self._api_key = config.api_key.get_secret_value() if config.api_key else None
        self._header_timeout = config.header_timeout_ms / 1000
        # Per provider: the session's own timeouts are only defaults.
        connect = config.connect_timeout_ms / 1000
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect)
        # Declared models are fixed: build their entries once, not per request.
        self._declared = (
            [ModelInfo(m, display_name_for(m)) for m in config.models]
            if config.models is not None
            else None
        )
        self._models: list[ModelInfo] | None = None
        self._models_at = 0.0

    def model_id_for(self, model: str) -> str | None:
        """Anthropic ids are served as they are; a declared list limits them."""
        if self._declared is None or model.startswith("claude-"):
            return model
        return model if any(m.id == model for m in self._declared) else None

    def can_count_tokens(self, model: str) -> bool:
        return True

    def _auth(self, headers: dict[str, str]) -> None:
        if self._api_key:
            headers["x-api-key"] = self._api_key

    async def send(self, ctx: RequestContext) -> UpstreamResponse:
        headers = upstream_headers(ctx.headers)
        headers.setdefault("anthropic-version", "2023-06-01")
        headers["accept-encoding"] = "identity"
        self._auth(headers)
        url = self._base + ctx.path + (f"?{ctx.query}" if ctx.query else "")
        try:
            async with asyncio.timeout(self._header_timeout):
                resp = await self._session.request(
                    "POST",
                    url,
                    data=body_payload(ctx.body),
                    headers=headers,
                    skip_auto_headers=("User-Agent", "Accept", "Content-Type"),
                    allow_redirects=False,
                    timeout=self._timeout,
                )
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"Upstream {self.id} sent no response headers within {self._header_timeout:g}s.",
                meta={"provider": self.id},
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            raise ProviderError(
                f"Could not reach upstream {self.id}: {type(exc).__name__}: {exc}",
                meta={"provider": self.id},
                tips=[f"Check providers.{self.id}.base_url and that the upstream is up."],
            ) from exc
        return self._wrap(resp)

    def _wrap(self, resp: aiohttp.ClientResponse) -> UpstreamResponse:
        provider_id = self.id

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.content.iter_any():
                    yield chunk
            except _TRANSPORT_ERRORS as exc:
                raise ProviderError(
                    f"Upstream {provider_id} connection lost mid-response: {type(exc).__name__}",
                    meta={"provider": provider_id},
                ) from exc

        async def read_all() -> bytes:
            try:
                return await resp.read()
            except _TRANSPORT_ERRORS as exc:
                raise ProviderError(
                    f"Upstream {provider_id} connection lost while reading the response: "
                    f"{type(exc).__name__}",
                    meta={"provider": provider_id},
                ) from exc

        def close(abort: bool) -> None:
            if abort:
                resp.close()
            else:
                resp.release()

        return UpstreamResponse(
            status=resp.status,
            headers=downstream_headers(resp.headers.items()),
            content_type=resp.headers.get("content-type", ""),
            body=body(),
            read_all=read_all,
            close=close,
            upstream_request_id=resp.headers.get("request-id"),
        )

    async def list_models(self) -> list[ModelInfo]:
        if self._declared is not None:
            return self._declared
        loop = asyncio.get_running_loop()
        if self._models is not None and loop.time() - self._models_at < _MODELS_TTL_S:
            return self._models
        headers = {"anthropic-version": "2023-06-01"}
        self._auth(headers)
        try:
            async with asyncio.timeout(10):
                async with self._session.get(
                    f"{self._base}/v1/models", params={"limit": "1000"}, headers=headers
                ) as resp:
                    payload = orjson.loads(await resp.read()) if resp.status == 200 else {}
        except (*_TRANSPORT_ERRORS, TimeoutError, orjson.JSONDecodeError) as exc:
            log.warning("model discovery on %s failed: %s", self.id, type(exc).__name__)
            return self._models or []
        models = [
            ModelInfo(
                str(item["id"]),
                str(item.get("display_name") or display_name_for(str(item["id"]))),
                str(item.get("created_at") or "1970-01-01T00:00:00Z"),
            )
            for item in payload.get("data", [])
            if isinstance(item, dict) and "id" in item
        ]
        self._models, self._models_at = models, loop.time()
        return models

    async def close(self) -> None:
        return None
