"""AWS Bedrock (Anthropic models) behind the Provider seam (protocols.md §5).

The Messages body goes to InvokeModel(WithResponseStream) with ``model``/``stream`` cut,
``anthropic_version`` set and the allowlisted betas in ``anthropic_beta`` (translate/bedrock.py,
every other byte kept). Requests are SigV4-signed with botocore (or carry a Bedrock API key).
The event stream is decoded frame by frame into Anthropic SSE as it arrives
(streaming/eventstream.py); the non-streaming answer already is an Anthropic Message.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson
from yarl import URL

from sluice.base.lazy_timers import LazyTimers
from sluice.config.providers import BedrockProviderConfig
from sluice.errors import InvalidRequest
from sluice.providers.aws_auth import AwsCredentials, sign_request
from sluice.providers.base import ModelInfo, UpstreamRequest, UpstreamResponse
from sluice.providers.transport import (
    beta_table,
    client_timeout,
    error_response,
    kept_headers,
    listed_models,
    open_request,
    passthrough,
    read_body,
    request_header,
    translated_stream,
    whole_response,
)
from sluice.streaming.eventstream import EventStreamToSSE
from sluice.translate.bedrock import (
    DEFAULT_BETA_ALLOWLIST,
    DEFAULT_MODEL_MAP,
    bedrock_exception_to_anthropic,
    filter_betas,
    from_bedrock_model,
    invoke_url,
    to_bedrock_body,
    to_bedrock_model,
)
from sluice.translate.openai_response import error_type_for

# SigV4 hashes the whole body: past this size, sign in a worker thread.
_SIGN_IN_THREAD_BYTES = 1 << 20


class BedrockProvider:
    kind = "bedrock"

    def __init__(
        self, provider_id: str, config: BedrockProviderConfig, session: aiohttp.ClientSession
    ) -> None:
        self.id = provider_id
        self._config = config
        self._idle_s = config.stream_idle_timeout_s
        self._session = session
        self._region = config.region
        self._betas = beta_table(DEFAULT_BETA_ALLOWLIST, config.betas, config.beta_defaults)
        self._models_map = dict(config.model_map)
        self._credentials = AwsCredentials(provider_id, config)
        # botocore.auth logs each canonical request, session token included, at DEBUG.
        logging.getLogger("botocore.auth").setLevel(logging.INFO)
        self._bearer = config.bearer_token.get_secret_value() if config.bearer_token else None
        self._timeout = client_timeout(config.connect_timeout_ms)
        self._header_timeout = config.header_timeout_ms / 1000
        self._timers = LazyTimers()  # the header timeout, without a loop timer per request
        self._listed = listed_models(config.models, self._models_map, DEFAULT_MODEL_MAP)

    def model_id_for(self, model: str) -> str | None:
        return to_bedrock_model(model, self._models_map)

    def can_count_tokens(self, model: str) -> bool:
        # Bedrock's CountTokens is not documented per model in protocols.md: count elsewhere.
        return False

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        model = request.model or ""
        model_id = self.model_id_for(model)
        if model_id is None and request.ingress == "bedrock":
            model_id = request.client_model  # a Bedrock id the client chose: Bedrock judges it
        if request.endpoint != "messages":
            raise InvalidRequest(
                f"Provider {self.id} (Bedrock) does not count tokens.",
                meta={"provider": self.id},
            )
        if model_id is None:
            raise InvalidRequest(
                f"Provider {self.id} (Bedrock) has no model id for '{model}'.",
                param="model",
                meta={"provider": self.id, "model": model},
                tips=[f"Map it under providers.{self.id}.model_map."],
            )
        # The raw lane: a Bedrock client's own body, unchanged by the gateway, goes as it is.
        as_sent = request.client_body if request.ingress == "bedrock" else None
        body = as_sent if as_sent is not None else self._bedrock_body(request)
        url = invoke_url(self._region, model_id, request.stream, self._config.base_url)
        # As botocore sends them: the stream names its payload type in its own header.
        accept = "x-amzn-bedrock-accept" if request.stream else "accept"
        headers = {"content-type": "application/json", accept: "application/json"}
        if self._bearer is not None:
            headers["authorization"] = f"Bearer {self._bearer}"
        else:
            credentials = await self._credentials.frozen()
            if len(body) > _SIGN_IN_THREAD_BYTES:
                headers = await asyncio.to_thread(
                    sign_request, "POST", url, body, headers, credentials, self._region
                )
            else:
                headers = sign_request("POST", url, body, headers, credentials, self._region)
        # encoded=True: the model id's %3A must go out exactly as it was signed.
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
        request_id = resp.headers.get("x-amzn-requestid")
        if resp.status >= 400:
            return await self._error(resp, request_id)
        if request.stream and "eventstream" in resp.headers.get("content-type", ""):
            if as_sent is not None:  # the client reads this stream itself: bytes unchanged
                return passthrough(resp, self.id, request_id, idle_s=self._idle_s)
            translator = EventStreamToSSE(
                strip_invocation_metrics=not self._config.keep_invocation_metrics
            )
            return translated_stream(resp, translator, self.id, request_id, idle_s=self._idle_s)
        if request.stream:
            return passthrough(resp, self.id, request_id, idle_s=self._idle_s)
        raw = await read_body(resp, self.id)
        body = raw if as_sent is not None else self._anthropic_model(raw)
        return whole_response(resp.status, body, kept_headers(resp), request_id)

    def _bedrock_body(self, request: UpstreamRequest) -> bytes:
        betas = filter_betas(request_header(request.headers, b"anthropic-beta"), self._betas)
        try:
            return to_bedrock_body(request.body, betas)
        except ValueError as exc:  # SpanError is one
            raise InvalidRequest(f"The request body is not a JSON object: {exc}") from exc

    def _anthropic_model(self, raw: bytes) -> bytes:
        """Observed Bedrock answers name the Anthropic model; map a Bedrock id back if not."""
        if b"anthropic." not in raw:
            return raw
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        model = message.get("model") if isinstance(message, dict) else None
        if not isinstance(model, str) or "anthropic." not in model:
            return raw
        message["model"] = from_bedrock_model(model, self._models_map)
        return orjson.dumps(message)

    async def _error(
        self, resp: aiohttp.ClientResponse, request_id: str | None
    ) -> UpstreamResponse:
        raw = await read_body(resp, self.id)
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = None
        payload = payload if isinstance(payload, dict) else {}
        message = payload.get("message") or payload.get("Message")
        text = message if isinstance(message, str) else raw[:200].decode("utf-8", "replace")
        name = resp.headers.get("x-amzn-errortype") or payload.get("__type") or payload.get("code")
        if isinstance(name, str) and name:
            status, body = bedrock_exception_to_anthropic(name.rsplit("#", 1)[-1], text)
        else:
            status = resp.status
            error = {"type": error_type_for(status), "message": text or f"Bedrock HTTP {status}"}
            body = {"type": "error", "error": error}
        return error_response(status, body, resp, request_id)

    async def list_models(self) -> list[ModelInfo]:
        return self._listed

    async def close(self) -> None:
        return None
