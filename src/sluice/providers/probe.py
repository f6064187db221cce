""" "Test connection": call a provider's models endpoint with a credential, report ok/error.

Anthropic (``GET /v1/models``) and OpenAI-compatible (``GET /models``) upstreams are called;
Bedrock and Vertex are not probed yet (their listing APIs live on other hosts, with their own
signing) and answer ``checked: false``.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from sluice.config.providers import AnyProviderConfig

_TIMEOUT = aiohttp.ClientTimeout(total=10)


def _request(config: AnyProviderConfig) -> tuple[str, dict[str, str], dict[str, str]] | None:
    """(url, headers, query) of the models call; None when this type is not probed."""
    if config.type == "anthropic":
        headers = {"anthropic-version": "2023-06-01"}
        if config.api_key is not None:
            headers["x-api-key"] = config.api_key.get_secret_value()
        return f"{config.base_url}/v1/models", headers, {"limit": "1"}
    if config.type == "openai":
        headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        query: dict[str, str] = {}
        if config.api_key is not None and config.api_version is not None:  # Azure OpenAI
            headers["api-key"] = config.api_key.get_secret_value()
            query["api-version"] = config.api_version
        elif config.api_key is not None:
            headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        return f"{config.base_url}/models", headers, query
    return None


async def probe(config: AnyProviderConfig) -> dict[str, Any]:
    call = _request(config)
    if call is None:
        return {"ok": None, "checked": False, "error": f"{config.type}: not probed yet"}
    url, headers, query = call
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            session.get(url, headers=headers, params=query) as resp,
        ):
            body = (await resp.read())[:300].decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"ok": False, "checked": True, "error": f"{type(exc).__name__}: {exc}"[:300]}
    if resp.status == 200:
        return {"ok": True, "checked": True, "status": 200, "error": None}
    return {"ok": False, "checked": True, "status": resp.status, "error": body}
