"""Google Vertex AI (Anthropic models) behind the Provider seam (protocols.md §6).

rawPredict / streamRawPredict with the model in the URL, ``anthropic_version`` in the body and
the allowlisted betas in the ``anthropic-beta`` header (as the Vertex SDK client sends them).
The answer is Anthropic's own SSE or JSON, passed through; Google front-end errors are turned
into Anthropic ones. Bearer tokens come from google-auth, refreshed off the loop.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from sluice.base.lazy_timers import LazyTimers
from sluice.config.providers import VertexProviderConfig
from sluice.errors import InvalidRequest
from sluice.providers.base import ModelInfo, UpstreamRequest, UpstreamResponse
from sluice.providers.transport import (
    beta_table,
    client_timeout,
    error_response,
    listed_models,
    open_request,
    passthrough,
    read_body,
    request_header,
)
from sluice.providers.vertex_auth import GoogleTokenSource, token_source
from sluice.translate.vertex import (
    DEFAULT_BETA_ALLOWLIST,
    DEFAULT_MODEL_MAP,
    count_tokens_url,
    filter_betas,
    members_without_beta,
    predict_url,
    to_vertex_body,
    to_vertex_count_tokens_body,
    to_vertex_model,
    vertex_error_to_anthropic,
)


class VertexProvider:
    kind = "vertex"

    def __init__(
        self, provider_id: str, config: VertexProviderConfig, session: aiohttp.ClientSession
    ) -> None:
        self.id = provider_id
        self._config = config
        self._session = session
        self._tokens = token_source(config)
        self._betas = beta_table(DEFAULT_BETA_ALLOWLIST, config.betas, config.beta_defaults)
        self._models_map = dict(config.model_map)
        self._timeout = client_timeout(config.connect_timeout_ms)
        self._header_timeout = config.header_timeout_ms / 1000
        self._timers = LazyTimers()  # the header timeout, without a loop timer per request
        self._listed = listed_models(config.models, self._models_map, DEFAULT_MODEL_MAP)

    def model_id_for(self, model: str) -> str | None:
        return to_vertex_model(model, self._models_map)

    def can_count_tokens(self, model: str) -> bool:
        return self.model_id_for(model) is not None

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        model = request.model or ""
        model_id = self.model_id_for(model)
        if model_id is None:
            raise InvalidRequest(
                f"Provider {self.id} (Vertex AI) has no model id for '{model}'.",
                param="model",
                meta={"provider": self.id, "model": model},
                tips=[f"Map it under providers.{self.id}.model_map."],
            )
        cfg = self._config
        betas = filter_betas(request_header(request.headers, b"anthropic-beta"), self._betas)
        drop = members_without_beta(betas)
        try:
            if request.endpoint == "count_tokens":
                body = to_vertex_count_tokens_body(request.body, model_id, drop=drop)
                url = count_tokens_url(cfg.project, cfg.region, cfg.base_url)
            else:
                body = to_vertex_body(request.body, drop=drop)
                url = predict_url(cfg.project, cfg.region, model_id, request.stream, cfg.base_url)
        except ValueError as exc:  # SpanError is one
            raise InvalidRequest(f"The request body is not a JSON object: {exc}") from exc
        headers = {
            "content-type": "application/json",
            "authorization": f"Bearer {await self._tokens.token()}",
        }
        if betas:
            headers["anthropic-beta"] = ",".join(betas)
        resp = await open_request(
            self._session,
            self.id,
            URL(url, encoded=True),
            body,
            headers,
            timeouts=self._timeout,
            header_timeout_s=self._header_timeout,
            timers=self._timers,
        )
        request_id = resp.headers.get("request-id") or resp.headers.get("x-request-id")
        if resp.status >= 400:
            raw = await read_body(resp, self.id)
            status, payload = vertex_error_to_anthropic(resp.status, raw)
            return error_response(status, payload, resp, request_id)
        return passthrough(resp, self.id, request_id, idle_s=self._config.stream_idle_timeout_s)

    async def list_models(self) -> list[ModelInfo]:
        return self._listed

    async def close(self) -> None:
        if isinstance(self._tokens, GoogleTokenSource):
            self._tokens.close()
