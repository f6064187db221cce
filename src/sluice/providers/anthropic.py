"""Anthropic first-party API: the raw lane.

Request bytes go upstream unchanged (the caller may have spliced ``model``); headers are
forwarded as sent minus credentials; the provider key replaces the virtual key. Response
bytes come back unchanged.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson

from sluice.base.lazy_timers import LazyTimers
from sluice.config.models import ProviderConfig
from sluice.providers.base import ModelInfo, UpstreamRequest, UpstreamResponse, display_name_for
from sluice.providers.headers import downstream_headers, upstream_headers
from sluice.providers.transport import TRANSPORT_ERRORS, open_request, relayed

log = logging.getLogger("sluice.providers.anthropic")

_MODELS_TTL_S = 600.0
_FAILED_TTL_S = 30.0  # a failed discovery is not retried for this long


class AnthropicProvider:
    kind = "anthropic"

    def __init__(
        self, provider_id: str, config: ProviderConfig, session: aiohttp.ClientSession
    ) -> None:
        self.id = provider_id
        self._config = config
        self._session = session
        self._base = config.base_url
        self._api_key = config.api_key.get_secret_value() if config.api_key else None
        self._header_timeout = config.header_timeout_ms / 1000
        self._timers = LazyTimers()  # the header timeout, without a loop timer per request
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
        self._fresh_until = 0.0
        self._discovery_timeout = config.discovery_timeout_ms / 1000
        self._discovering: asyncio.Task[None] | None = None

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

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        headers = upstream_headers(request.headers)
        headers.setdefault("anthropic-version", "2023-06-01")
        headers["accept-encoding"] = "identity"
        self._auth(headers)
        url = self._base + request.path + (f"?{request.query}" if request.query else "")
        resp = await open_request(
            self._session,
            self.id,
            url,
            request.body,
            headers,
            timeouts=self._timeout,
            header_timeout_s=self._header_timeout,
            timers=self._timers,
        )
        # The raw lane: every end-to-end header back as the upstream sent it.
        return relayed(
            resp,
            self.id,
            downstream_headers(resp.raw_headers),
            resp.headers.get("request-id"),
            idle_s=self._config.stream_idle_timeout_s,
        )

    async def list_models(self) -> list[ModelInfo]:
        """Declared models, else what ``GET /v1/models`` said. One lookup at a time, bounded by
        ``discovery_timeout_ms``; failures are remembered, and a stale list is answered at once
        while it is refreshed, so a slow or dead endpoint never holds requests."""
        if self._declared is not None:
            return self._declared
        loop = asyncio.get_running_loop()
        if loop.time() < self._fresh_until:
            return self._models or []
        if self._discovering is None:
            self._discovering = loop.create_task(self._discover())
        if self._models is None:  # nothing known yet: wait for this first lookup (bounded)
            await asyncio.shield(self._discovering)
        return self._models or []

    async def _discover(self) -> None:
        loop = asyncio.get_running_loop()
        headers = {"anthropic-version": "2023-06-01"}
        self._auth(headers)
        try:
            async with asyncio.timeout(self._discovery_timeout):
                async with self._session.get(
                    f"{self._base}/v1/models", params={"limit": "1000"}, headers=headers
                ) as resp:
                    payload = orjson.loads(await resp.read()) if resp.status == 200 else None
            if not isinstance(payload, dict):
                raise ValueError("not a model list")
        except (*TRANSPORT_ERRORS, TimeoutError, ValueError) as exc:
            log.warning("model discovery on %s failed: %s", self.id, type(exc).__name__)
            self._models = self._models or []
            self._fresh_until = loop.time() + _FAILED_TTL_S
            return
        finally:
            self._discovering = None
        self._models = [
            ModelInfo(
                str(item["id"]),
                str(item.get("display_name") or display_name_for(str(item["id"]))),
                str(item.get("created_at") or "1970-01-01T00:00:00Z"),
            )
            for item in payload.get("data", [])
            if isinstance(item, dict) and "id" in item
        ]
        self._fresh_until = loop.time() + _MODELS_TTL_S

    async def close(self) -> None:
        if self._discovering is not None:
            self._discovering.cancel()
