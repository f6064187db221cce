""" "Test connection": call a provider's models endpoint with a credential, report ok/error.

Each type's listing call, with the credential the gateway would use:

- anthropic: ``GET {base_url}/v1/models`` with ``x-api-key``;
- openai: ``GET {base_url}/models`` with the Bearer key (Azure: ``api-key`` and the version);
- bedrock: ``ListFoundationModels``, ``GET https://bedrock.{region}.amazonaws.com/
  foundation-models?byProvider=anthropic`` (the control plane; with ``base_url`` set, that
  path under it), SigV4-signed or with the Bedrock API key;
- vertex: ``publishers.models.get``, ``GET {api root}/publishers/anthropic/models/{model}``
  for the provider's first model, with a google-auth access token.

A credential that cannot be resolved at all (no AWS chain, a service account Google refuses)
is reported as a failed check with the reason, never raised.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from google.auth.exceptions import GoogleAuthError
from yarl import URL

from sluice.config.providers import (
    AnthropicProviderConfig,
    AnyProviderConfig,
    BedrockProviderConfig,
    OpenAIProviderConfig,
    VertexProviderConfig,
)
from sluice.errors import ProviderError
from sluice.logs import redact
from sluice.providers.aws_auth import AwsCredentials, sign_request
from sluice.providers.vertex_auth import GoogleTokenSource, token_source
from sluice.translate.vertex import DEFAULT_MODEL_MAP, to_vertex_model, vertex_base_url

_TIMEOUT = aiohttp.ClientTimeout(total=10)
_Call = tuple[str, dict[str, str], dict[str, str]]  # url, headers, query


def _anthropic_call(config: AnthropicProviderConfig) -> _Call:
    headers = {"anthropic-version": "2023-06-01"}
    if config.api_key is not None:
        headers["x-api-key"] = config.api_key.get_secret_value()
    return f"{config.base_url}/v1/models", headers, {"limit": "1"}


def _openai_call(config: OpenAIProviderConfig) -> _Call:
    headers = {k: v.get_secret_value() for k, v in config.headers.items()}
    query: dict[str, str] = {}
    if config.api_key is not None and config.api_version is not None:  # Azure OpenAI
        headers["api-key"] = config.api_key.get_secret_value()
        query["api-version"] = config.api_version
    elif config.api_key is not None:
        headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    return f"{config.base_url}/models", headers, query


async def _bedrock_call(provider_id: str, config: BedrockProviderConfig) -> _Call:
    base = (config.base_url or f"https://bedrock.{config.region}.amazonaws.com").rstrip("/")
    url = f"{base}/foundation-models?byProvider=anthropic"  # signed as sent: query in the URL
    if config.bearer_token is not None:
        return url, {"authorization": f"Bearer {config.bearer_token.get_secret_value()}"}, {}
    credentials = await AwsCredentials(provider_id, config).frozen()
    return url, sign_request("GET", url, b"", {}, credentials, config.region), {}


def probe_model(config: VertexProviderConfig) -> str:
    """The publisher model the Vertex probe asks for: the provider's first model, unversioned
    (Model Garden names carry no ``@date``)."""
    first = next(iter(config.models or config.model_map or DEFAULT_MODEL_MAP))
    vertex_id = to_vertex_model(first, config.model_map) or first
    return vertex_id.partition("@")[0]


async def _vertex_call(config: VertexProviderConfig) -> _Call:
    tokens = token_source(config)
    try:
        token = await tokens.token()
    finally:
        if isinstance(tokens, GoogleTokenSource):
            tokens.close()
    root = (config.base_url or vertex_base_url(config.region)).rstrip("/")
    url = f"{root}/publishers/anthropic/models/{probe_model(config)}"
    return url, {"authorization": f"Bearer {token}"}, {}


async def _call(provider_id: str, config: AnyProviderConfig) -> _Call:
    if config.type == "bedrock":
        return await _bedrock_call(provider_id, config)
    if config.type == "vertex":
        return await _vertex_call(config)
    if config.type == "anthropic":
        return _anthropic_call(config)
    return _openai_call(config)


async def probe(config: AnyProviderConfig, provider_id: str = "probe") -> dict[str, Any]:
    """``{"ok", "checked", "status"?, "error"}``: ok only on a 200 from the listing call."""
    try:
        url, headers, query = await _call(provider_id, config)
    except (ProviderError, GoogleAuthError, ValueError, OSError) as exc:
        return {"ok": False, "checked": True, "error": f"credentials: {exc}"[:300]}
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            # encoded=True: a signed URL must go out exactly as it was signed.
            session.get(URL(url, encoded=True), headers=headers, params=query or None) as resp,
        ):
            # A bounded read: a hostile upstream's error page can be endless.
            body = (await resp.content.read(4096)).decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"ok": False, "checked": True, "error": f"{type(exc).__name__}: {exc}"[:300]}
    if resp.status == 200:
        return {"ok": True, "checked": True, "status": 200, "error": None}
    return {
        "ok": False,
        "checked": True,
        "status": resp.status,
        "error": _scrub(body, headers)[:300],
    }


def _scrub(text: str, sent: dict[str, str]) -> str:
    """An upstream (or a proxy in front of it) may echo the request back in its error page:
    the credential we sent never reaches the admin API's answer, whatever its shape."""
    for value in sent.values():
        secret = value.removeprefix("Bearer ")
        if len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return redact(text)
