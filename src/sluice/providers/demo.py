"""The demo upstream: canned replies answered in-process when no provider is configured.

It stands in for the Anthropic lane on a one-command start, so it is priced, labelled and
listed as one (kind ``anthropic``). Replies are the wire format the first-party API sends
(``translate/canned.py``): valid SSE or ``Message`` JSON with usage, and a ``count_tokens``
answer from the body size. Ids follow the fake upstreams' (``req_fake_<n>``,
``msg_fake_<n>``, one ``n`` per request), so the demo answers byte for byte as it did when it
was the fake Anthropic server on a port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import orjson

from sluice.providers.base import ModelInfo, UpstreamRequest, UpstreamResponse, display_name_for
from sluice.providers.transport import SSE_CONTENT_TYPE, whole_response
from sluice.translate.canned import Reply, TextBlock, error_body, message_json, stream_events

__all__ = ["DEMO_MODELS", "DEMO_TEXT", "DemoProvider"]

DEMO_TEXT: Final = (
    "Hello from Sluice's DEMO upstream. This reply is canned, not from a real model: "
    "no provider key is configured. Set ANTHROPIC_API_KEY (or add a provider to sluice.yaml) "
    "and restart to relay to Anthropic."
)
DEMO_MODELS: Final = ("claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5-20251001")
_REPLY: Final = Reply([TextBlock(DEMO_TEXT, chunks=6)])


class DemoProvider:
    kind = "anthropic"

    def __init__(self, provider_id: str = "demo") -> None:
        self.id = provider_id
        self._listed = [ModelInfo(m, display_name_for(m)) for m in DEMO_MODELS]
        self._requests = 0  # numbers the ids, as the fake upstream's request counter did

    def model_id_for(self, model: str) -> str | None:
        """As the Anthropic lane with a declared model list: any ``claude-*`` id."""
        return model if model.startswith("claude-") or model in DEMO_MODELS else None

    def can_count_tokens(self, model: str) -> bool:
        return True

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self._requests += 1
        n = self._requests
        request_id = f"req_fake_{n}"
        if request.endpoint == "count_tokens":
            tokens = {"input_tokens": max(1, len(request.body) // 4)}
            return whole_response(200, orjson.dumps(tokens), [], request_id)
        try:
            payload: Any = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            body = error_body(400, request_id, message="Request body must be a JSON object.")
            return whole_response(400, body, [], request_id)
        model = payload.get("model")
        model = model if isinstance(model, str) else "claude-unknown"
        if payload.get("stream") is True:
            return _stream(stream_events(_REPLY, model=model, n=n), request_id)
        message = orjson.dumps(message_json(_REPLY, model=model, n=n))
        return whole_response(200, message, [], request_id)

    async def list_models(self) -> list[ModelInfo]:
        return self._listed

    async def close(self) -> None:
        return None


def _stream(events: list[bytes], request_id: str) -> UpstreamResponse:
    """The events one chunk each, as the upstream would write them."""

    async def body() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    async def read_all() -> bytes:
        return b"".join(events)

    return UpstreamResponse(
        status=200,
        headers=[(b"content-type", SSE_CONTENT_TYPE.encode()), (b"cache-control", b"no-cache")],
        content_type=SSE_CONTENT_TYPE,
        body=body(),
        read_all=read_all,
        close=lambda _abort: None,
        upstream_request_id=request_id,
    )
