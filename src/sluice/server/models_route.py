"""GET /v1/models and /v1/models/{id}: the models this key may use.

Anthropic's shape (with limit/after_id/before_id paging) by default; OpenAI's list shape when
the caller authenticates with Bearer and sends no ``anthropic-version`` (an OpenAI SDK).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from sluice.base.asgi import Receive, Scope, Send, send_error, send_json
from sluice.base.clock import new_request_id
from sluice.core.steps.identify import presented_key
from sluice.errors import GatewayError, InvalidRequest, NotFound
from sluice.governance.model_access import model_permitted
from sluice.governance.virtual_key import VirtualKey
from sluice.providers.base import ModelInfo
from sluice.server.services import Services


async def visible_models(services: Services, key: VirtualKey) -> list[ModelInfo]:
    """The key's aliases (those that resolve to a model it may use), then every model its
    allowed providers serve, minus what its policy denies."""
    seen: dict[str, ModelInfo] = {}
    resolver = services.resolver
    policy = services.policies.for_key(key)
    for alias in key.config.model_aliases:
        try:
            resolution = await resolver.resolve(key, alias)
        except GatewayError:
            continue  # an alias to a model this key may not use is not listed
        if policy.models.violation(alias) is None:
            note = f"Alias for {resolution.model} on {resolution.provider_id}, via Sluice"
            seen[alias] = ModelInfo(
                alias, f"{alias} (alias for {resolution.model})", description=note
            )
    for provider in services.router.allowed_for(key):
        for info in await provider.list_models():
            if info.id not in seen and model_permitted(key, info.id):
                seen[info.id] = info
    return list(seen.values())


def _anthropic(info: ModelInfo) -> dict[str, Any]:
    """Anthropic's model object, plus the ``description`` Claude Code's gateway model
    discovery (CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1) reads."""
    return {
        "type": "model",
        "id": info.id,
        "display_name": info.display_name,
        "description": info.description or f"{info.display_name}, via Sluice",
        "created_at": info.created_at,
    }


def _openai(info: ModelInfo) -> dict[str, Any]:
    created = int(datetime.fromisoformat(info.created_at.replace("Z", "+00:00")).timestamp())
    return {"id": info.id, "object": "model", "created": created, "owned_by": "anthropic"}


def _page(models: list[ModelInfo], query: dict[str, list[str]]) -> dict[str, Any]:
    try:
        limit = int(query.get("limit", ["20"])[0])
    except ValueError as exc:
        raise InvalidRequest("`limit` must be an integer from 1 to 1000.", param="limit") from exc
    if not 1 <= limit <= 1000:
        raise InvalidRequest("`limit` must be an integer from 1 to 1000.", param="limit")
    ids = [m.id for m in models]
    after = query.get("after_id", [None])[0]
    before = query.get("before_id", [None])[0]
    start, stop = 0, len(models)
    if after is not None:
        start = ids.index(after) + 1 if after in ids else len(ids)
        stop = min(len(models), start + limit)
        has_more = stop < len(models)
    elif before is not None:
        stop = ids.index(before) if before in ids else 0
        start = max(0, stop - limit)
        has_more = start > 0
    else:
        stop = min(len(models), limit)
        has_more = stop < len(models)
    page = models[start:stop]
    return {
        "data": [_anthropic(m) for m in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


async def handle_models(services: Services, scope: Scope, receive: Receive, send: Send) -> None:
    send = services.metrics.counting_send("models", send)  # metrics: requests by route
    request_id = new_request_id()
    key_text, scheme = presented_key(scope["headers"])
    openai_shape = scheme == "bearer" and not any(
        k == b"anthropic-version" for k, _ in scope["headers"]
    )
    try:
        key = await services.keys.authenticate(key_text)
        models = await visible_models(services, key)
        path: str = scope["path"]
        if path.rstrip("/") == "/v1/models":
            if openai_shape:
                body: dict[str, Any] = {"object": "list", "data": [_openai(m) for m in models]}
            else:
                body = _page(models, parse_qs(scope["query_string"].decode("latin-1")))
            await send_json(send, 200, body, request_id)
            return
        wanted = path.removeprefix("/v1/models/")
        for info in models:
            if info.id == wanted:
                await send_json(
                    send, 200, _openai(info) if openai_shape else _anthropic(info), request_id
                )
                return
        raise NotFound(
            f"Model {wanted!r} is not available to this key.",
            param="model_id",
            tips=["GET /v1/models lists what this key may use."],
        )
    except GatewayError as err:
        services.metrics.refused(err)  # metrics: auth failures
        await send_error(send, err, request_id, openai_shape=openai_shape)
