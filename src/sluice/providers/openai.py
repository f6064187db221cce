"""Any OpenAI-compatible Chat Completions upstream (OpenAI, Azure OpenAI, vLLM, OpenRouter)
behind the Provider seam (protocols.md §7).

The Messages request is translated to Chat Completions (translate/openai_chat.py; Claude
Code's billing line stripped from ``system``, ``stream_options.include_usage`` injected), and
the answer back to an Anthropic Message or SSE (translate/openai_stream.py), chunk by chunk.
What OpenAI cannot express is a 400 ``invalid_request_error``, never a silent drop.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import aiohttp
import orjson

from sluice.base.lazy_timers import LazyTimers
from sluice.config.providers import OpenAIProviderConfig
from sluice.errors import InvalidRequest, UnsupportedByProvider
from sluice.providers.base import ModelInfo, UpstreamRequest, UpstreamResponse
from sluice.providers.transport import (
    client_timeout,
    error_response,
    kept_headers,
    listed_models,
    open_request,
    passthrough,
    read_body,
    translated_stream,
    whole_response,
)
from sluice.translate.members import rewrite_top_level
from sluice.translate.openai_chat import TranslationError, anthropic_to_openai
from sluice.translate.openai_response import (
    anthropic_error,
    openai_error_to_anthropic,
    openai_to_anthropic_message,
)
from sluice.translate.openai_stream import OpenAIStreamTranslator


class OpenAIProvider:
    kind = "openai"

    def __init__(
        self, provider_id: str, config: OpenAIProviderConfig, session: aiohttp.ClientSession
    ) -> None:
        self.id = provider_id
        self._config = config
        self._session = session
        self._timeout = client_timeout(config.connect_timeout_ms)
        self._header_timeout = config.header_timeout_ms / 1000
        self._timers = LazyTimers()  # the header timeout, without a loop timer per request
        self._map = dict(config.model_map)
        self._declared = frozenset(config.models or ())
        self._listed = listed_models(config.models, self._map, {})
        headers = {k.lower(): v.get_secret_value() for k, v in config.headers.items()}
        headers["content-type"] = "application/json"
        if config.api_key is not None:
            key = config.api_key.get_secret_value()
            if config.api_version is not None:
                headers["api-key"] = key
            else:
                headers["authorization"] = f"Bearer {key}"
        self._headers = headers

    def model_id_for(self, model: str) -> str | None:
        """The mapped upstream model; a declared model is sent under its own name."""
        if model in self._map:
            return self._map[model]
        return model if model in self._declared else None

    def can_count_tokens(self, model: str) -> bool:
        return False  # Chat Completions has no token-count endpoint

    def _url(self, upstream_model: str) -> str:
        base, version = self._config.base_url, self._config.api_version
        if version is None:
            return f"{base}/chat/completions"
        deployment = urllib.parse.quote(upstream_model, safe="")
        query = urllib.parse.urlencode({"api-version": version})
        return f"{base}/openai/deployments/{deployment}/chat/completions?{query}"

    def _translate(self, body: bytes, upstream_model: str) -> bytes:
        try:
            parsed: Any = orjson.loads(body)  # a fresh parse: the request's bytes stay as sent
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        try:
            out = anthropic_to_openai(
                parsed,
                model=upstream_model,
                strip_billing_header=self._config.strip_billing_header,
            )
        except TranslationError as exc:
            raise UnsupportedByProvider(
                f"{exc.message} (provider {self.id} speaks OpenAI Chat Completions).",
                param=exc.param,
                meta={"provider": self.id},
                tips=["Route this request to an Anthropic, Bedrock or Vertex provider."],
            ) from exc
        return orjson.dumps(out)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        model = request.model or ""
        if request.endpoint != "messages":
            raise InvalidRequest(
                f"Provider {self.id} (OpenAI-compatible) does not count tokens.",
                meta={"provider": self.id},
            )
        upstream_model = self.model_id_for(model)
        if upstream_model is None:
            raise InvalidRequest(
                f"Provider {self.id} (OpenAI-compatible) has no model for '{model}'.",
                param="model",
                meta={"provider": self.id, "model": model},
                tips=[f"Map it under providers.{self.id}.model_map."],
            )
        # The raw lane: an OpenAI client's own body (model mapped, usage asked for) goes as it
        # is, and the answer comes back untranslated; the relay taps a translated copy.
        as_sent = request.client_body if request.ingress == "openai" else None
        if as_sent is not None:
            body = _raw_chat_body(as_sent, upstream_model, request.stream)
        else:
            body = self._translate(request.body, upstream_model)
        resp = await open_request(
            self._session,
            self.id,
            self._url(upstream_model),
            body,
            self._headers,
            timeouts=self._timeout,
            header_timeout_s=self._header_timeout,
            timers=self._timers,
        )
        request_id = resp.headers.get("x-request-id") or resp.headers.get("apim-request-id")
        if resp.status >= 400:
            status, payload = openai_error_to_anthropic(resp.status, await read_body(resp, self.id))
            return error_response(status, payload, resp, request_id)
        if as_sent is not None:
            return await self._untranslated(resp, request.stream, request_id)
        if request.stream and resp.headers.get("content-type", "").startswith("text/event-stream"):
            translator = OpenAIStreamTranslator(model)
            return translated_stream(
                resp, translator, self.id, request_id, idle_s=self._config.stream_idle_timeout_s
            )
        raw = await read_body(resp, self.id)
        try:
            completion = orjson.loads(raw)
            if not isinstance(completion, dict):
                raise TranslationError("upstream answered JSON that is not an object")
            message = openai_to_anthropic_message(completion, model=model)
        except (orjson.JSONDecodeError, TranslationError) as exc:
            text = f"Upstream {self.id} sent an answer that could not be translated: {exc}"
            return error_response(502, anthropic_error("api_error", text), resp, request_id)
        # A whole answer to a stream request (some compatible servers) stays JSON too.
        return whole_response(200, orjson.dumps(message), kept_headers(resp), request_id)

    async def _untranslated(
        self, resp: aiohttp.ClientResponse, stream: bool, request_id: str | None
    ) -> UpstreamResponse:
        if stream and resp.headers.get("content-type", "").startswith("text/event-stream"):
            out = passthrough(resp, self.id, request_id, idle_s=self._config.stream_idle_timeout_s)
        else:
            raw = await read_body(resp, self.id)
            out = whole_response(200, raw, kept_headers(resp), request_id)
        out.shape = "openai"
        return out

    async def list_models(self) -> list[ModelInfo]:
        return self._listed

    async def close(self) -> None:
        return None


def _raw_chat_body(body: bytes, upstream_model: str, stream: bool) -> bytes:
    """The client's Chat body with the upstream's model id, and (streaming) usage asked for:
    the ledger, budgets and rate limits need it. Every other member keeps its bytes."""
    head = [b'"model":' + orjson.dumps(upstream_model)]
    cut = {"model"}
    if stream:
        head.append(b'"stream_options":{"include_usage":true}')
        cut.add("stream_options")
    try:
        return rewrite_top_level(body, cut, head)
    except ValueError as exc:  # SpanError: the door parsed it, so this is not expected
        raise InvalidRequest(f"The request body is not a JSON object: {exc}") from exc
