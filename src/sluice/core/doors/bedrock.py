"""The Bedrock-shaped door under ``/bedrock``: Claude Code in Bedrock mode
(``CLAUDE_CODE_USE_BEDROCK=1``, ``ANTHROPIC_BEDROCK_BASE_URL=http://gw/bedrock``,
``CLAUDE_CODE_SKIP_BEDROCK_AUTH=1``, the virtual key as ``AWS_BEARER_TOKEN_BEDROCK``).

Routes: ``model/{modelId}/invoke``, ``…/invoke-with-response-stream`` and
``…/count-tokens`` (the listings are answered by ``server/bedrock_listings.py``).

The way in: the InvokeModel body (``anthropic_version`` and ``anthropic_beta`` inside, the
model in the path) becomes a Messages body; its betas join the ``anthropic-beta`` header. A
Bedrock model or inference-profile id (``us.anthropic.claude-haiku-4-5-20251001-v1:0``)
becomes its Anthropic id, which the key's rules and aliases then judge as on any door.

The way out (``BedrockReshape``): a stream becomes ``application/vnd.amazon.eventstream``
frames, a Message keeps its JSON with Bedrock's token-count headers, a count becomes
``{"inputTokens": n}``, and every error takes Bedrock's shape (``x-amzn-errortype``,
``{"message": …}``), which the AWS SDK inside the CLI reads for its retries.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass

import orjson

from sluice.base.asgi import Send
from sluice.core.context import RequestContext
from sluice.core.doors.messages_body import as_messages_body, member, model_from_path
from sluice.core.doors.reshape import Headers, reshaping_send, without
from sluice.errors import InvalidRequest
from sluice.streaming.eventstream_encode import SseToEventStream
from sluice.translate.bedrock import from_bedrock_model
from sluice.translate.bedrock_errors import bedrock_error
from sluice.translate.bedrock_responses import bedrock_invoke_headers

PREFIX = "/bedrock/"
EVENT_STREAM = b"application/vnd.amazon.eventstream"
_ROUTE = re.compile(r"model/(?P<model>.+)/(?P<op>invoke|invoke-with-response-stream|count-tokens)")
_ENDPOINTS = {
    "invoke": ("messages", False),
    "invoke-with-response-stream": ("messages", True),
    "count-tokens": ("count_tokens", None),
}
_BEDROCK_MEMBERS = ("anthropic_version", "anthropic_beta")
# An InvokeModel body wrapped in CountTokens still has its sampling members, which Messages'
# count_tokens does not take.
_NOT_COUNTED = (
    *_BEDROCK_MEMBERS,
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "stream",
)


@dataclass(frozen=True, slots=True)
class BedrockDoor:
    endpoint: str  # messages | count_tokens
    model_id: str
    stream: bool | None  # None: count-tokens

    @property
    def name(self) -> str:
        return "bedrock"

    def inbound(self, ctx: RequestContext) -> None:
        body = ctx.body if self.endpoint == "messages" else _counted_body(ctx.body)
        ctx.door_model = model_from_path(self.model_id)
        model = from_bedrock_model(ctx.door_model)
        betas = member(body, "anthropic_beta")
        if betas is not None:
            ctx.headers = _with_betas(ctx.headers, betas)
        cut = _BEDROCK_MEMBERS if self.endpoint == "messages" else _NOT_COUNTED
        ctx.body = as_messages_body(body, model, remove=cut, stream=self.stream)
        ctx.path = "/v1/messages" if self.endpoint == "messages" else "/v1/messages/count_tokens"
        ctx.query = ""

    def outbound(self, send: Send, ctx: RequestContext) -> Send:
        return reshaping_send(send, BedrockReshape(counting=self.endpoint == "count_tokens"))


def match_bedrock(path: str) -> BedrockDoor | None:
    """The door for a POST under ``/bedrock/``; None when no Bedrock route matches. The model
    id may be an ARN, slashes included: the operation is the path's last segment."""
    found = _ROUTE.fullmatch(path, len(PREFIX))
    if found is None:
        return None
    endpoint, stream = _ENDPOINTS[found["op"]]
    return BedrockDoor(endpoint, found["model"], stream)


def _counted_body(body: bytes) -> bytes:
    """CountTokens wraps the InvokeModel body: ``{"input": {"invokeModel": {"body": b64}}}``."""
    wrapped = member(body, "input")
    invoke = wrapped.get("invokeModel") if isinstance(wrapped, dict) else None
    encoded = invoke.get("body") if isinstance(invoke, dict) else None
    if not isinstance(encoded, str):
        raise InvalidRequest(
            "CountTokens needs `input.invokeModel.body` (the InvokeModel body, base64); "
            "`input.converse` is not served.",
            param="input",
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            "`input.invokeModel.body` is not base64.", param="input.invokeModel.body"
        ) from exc


def _with_betas(headers: list[tuple[bytes, bytes]], betas: object) -> list[tuple[bytes, bytes]]:
    """The header's betas, then the body's, each once (Bedrock carries them in the body)."""
    if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
        raise InvalidRequest("`anthropic_beta` must be a list of strings.", param="anthropic_beta")
    names: list[str] = []
    for name, value in headers:
        if name == b"anthropic-beta":
            names.extend(v.strip() for v in value.decode("latin-1").split(","))
    names.extend(betas)
    merged = ",".join(dict.fromkeys(n for n in names if n)).encode("latin-1", "replace")
    return [*without(headers, b"anthropic-beta"), (b"anthropic-beta", merged)]


class BedrockReshape:
    """Anthropic's answers in Bedrock's runtime shapes (see the module's docstring)."""

    def __init__(self, *, counting: bool) -> None:
        self._counting = counting
        self._started = time.monotonic()  # the encoder's clock
        self._stream: SseToEventStream | None = None
        self._native = False

    def stream_start(self, headers: Headers) -> Headers:
        self._stream = SseToEventStream(started=self._started)
        # The raw lane: a Bedrock upstream's own frames, relayed as they came.
        self._native = any(k == b"content-type" and v == EVENT_STREAM for k, v in headers)
        kept = without(headers, b"content-type")
        return [*kept, (b"content-type", EVENT_STREAM)]

    def stream_chunk(self, chunk: bytes) -> bytes:
        assert self._stream is not None
        if self._native and not chunk.startswith(b"event: "):
            # Whole frames from the upstream (a frame starts with its length, never with
            # these bytes, which would say 1.7 GB). Only the gateway's own SSE frames, its
            # pings and errors, are encoded.
            return chunk
        return self._stream.feed(chunk)

    def stream_end(self) -> bytes:
        assert self._stream is not None
        return self._stream.finish()

    def whole(self, status: int, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if status >= 400:
            return _error(status, headers, payload)
        if not isinstance(payload, dict):
            return status, headers, body
        if self._counting:
            counted = {"inputTokens": payload.get("input_tokens", 0)}
            return status, headers, orjson.dumps(counted)
        return status, [*headers, *bedrock_invoke_headers(payload)], body


def _error(status: int, headers: Headers, payload: object) -> tuple[int, Headers, bytes]:
    error = payload.get("error") if isinstance(payload, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    status, extra, body = bedrock_error(
        status,
        kind if isinstance(kind, str) else "api_error",
        message if isinstance(message, str) else f"HTTP {status}",
    )
    kept = [(k, v) for k, v in without(headers, b"content-type") if k != b"x-amzn-errortype"]
    return status, [*kept, *extra], body
