"""A fake AWS Bedrock Runtime for Anthropic models: a real aiohttp server scripted with the
fake Anthropic upstream's ``Scenario``/``Reply``/``Fault``::

    async with FakeBedrock() as fake:
        fake.script(Scenario(fault=bedrock_error(429)), Scenario())
        url = invoke_url("us-east-1", model_id, stream=True, base_url=fake.url)

``POST /model/{modelId}/invoke`` answers the ``Message`` JSON plus ``x-amzn-bedrock-*`` usage
headers; ``.../invoke-with-response-stream`` answers ``application/vnd.amazon.eventstream``, one
``chunk`` frame per event with the event JSON base64 in ``bytes`` beside ``p`` padding, and
``amazon-bedrock-invocationMetrics`` inside ``message_stop`` (protocols.md §5.5, §5.7). The event
JSON is byte-for-byte FakeAnthropic's for the same reply and request number; ``model`` is the
Anthropic name of the model id, as Bedrock answers.

Checks, in order: SigV4 shape (``AWS4-HMAC-SHA256`` scoped to service ``bedrock``, with
``X-Amz-Date``; a ``Bearer`` API key also passes; the signature is not verified) → 403; route →
404 (``GET /foundation-models``, the control plane's ListFoundationModels, is served too);
the scripted fault; the body (a JSON object without ``model``/``stream``, an
``anthropic_version`` in ``accepted_versions``, every ``anthropic_beta`` in
``accepted_betas``) → 400 ValidationException. Errors are ``{"message": ...}`` with
``x-amzn-ErrorType``. The anthropic SDK 2.x sends ``anthropic_version`` ``2026-10-21``, not
``bedrock-2023-05-31``.

Faults: ``status`` (``bedrock_error`` picks the exception and message), ``body`` (verbatim),
``hang_before_headers``, ``first_byte_delay``; for streams ``event_delay``, ``drop_after_events``
(TCP abort), ``hang_after_events`` and ``error_after_events`` (an exception frame; see
``stream_exception``). A Fault's Anthropic ``error_type`` maps to the nearest Bedrock exception,
so FakeAnthropic's named scenarios work here too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import struct
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web
from multidict import CIMultiDictProxy

from sluice.testing.fake_anthropic import RecordedRequest
from sluice.testing.fake_server import FakeServer
from sluice.testing.scenarios import Fault, Reply, Scenario, message_json, stream_events
from sluice.translate.bedrock import (
    BEDROCK_ANTHROPIC_VERSION,
    DEFAULT_BETA_ALLOWLIST,
    INVOCATION_METRICS_KEY,
    from_bedrock_model,
)
from sluice.translate.bedrock import (
    DEFAULT_MODEL_MAP as BEDROCK_DEFAULT_MODEL_MAP,
)

__all__ = [
    "FakeBedrock",
    "bedrock_error",
    "chunk_frame",
    "encode_frame",
    "exception_frame",
    "invocation_metrics",
    "stream_exception",
    "stream_frames",
]

_NO_FAULT: Final = Fault()
_JSON: Final = "application/json"
_ERROR_TYPE_SUFFIX: Final = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_ROUTE: Final = re.compile(
    r"/model/(?P<model>[^/]+)/(?P<action>invoke|invoke-with-response-stream)"
)
_SIGV4: Final = re.compile(
    r"AWS4-HMAC-SHA256 Credential=[^/\s]+/\d{8}/[a-z0-9-]+/(?P<service>[a-z0-9-]+)/aws4_request,"
    r" ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?Signature=[0-9a-f]{64}"
)
# Non-streaming Invoke reports usage in headers (protocols.md §5.1).
_METRIC_HEADERS: Final = (
    ("invocation-latency", "invocationLatency"),
    ("input-token-count", "inputTokenCount"),
    ("output-token-count", "outputTokenCount"),
    ("cache-read-input-token-count", "cacheReadInputTokenCount"),
    ("cache-write-input-token-count", "cacheWriteInputTokenCount"),
)
_PADDING: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# Exception name → (HTTP status, default message); the first name with a status is its default.
_EXCEPTIONS: Final = {
    "ValidationException": (400, "Malformed input request, please reformat your input."),
    "AccessDeniedException": (403, "You don't have access to the model with the specified ID."),
    "ResourceNotFoundException": (404, "The requested resource could not be found."),
    "ModelTimeoutException": (408, "Model has timed out in processing the request."),
    "ModelErrorException": (424, "The model returned an error."),
    "ModelStreamErrorException": (424, "The model stream returned an error."),
    "ThrottlingException": (429, "Too many requests, please wait before trying again."),
    "InternalServerException": (500, "The system encountered an unexpected error."),
    "ServiceUnavailableException": (503, "Bedrock is unable to process your request."),
}
# Anthropic error types (a Fault's default vocabulary) → the ResponseStream exception members.
_STREAM_EXCEPTION_FOR: Final = {
    "overloaded_error": "serviceUnavailableException",
    "rate_limit_error": "throttlingException",
    "api_error": "internalServerException",
    "invalid_request_error": "validationException",
    "timeout_error": "modelTimeoutException",
}


# --- frames (pure builders) -----------------------------------------------------------------


def _string_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return bytes([len(raw_name)]) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers (type 7), all Bedrock sends. botocore
    only decodes, hence this encoder: prelude (total and headers length, CRC32), headers,
    payload, CRC32 of everything before it."""
    encoded = b"".join(_string_header(k, v) for k, v in headers.items())
    prelude = struct.pack("!II", 16 + len(encoded) + len(payload), len(encoded))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack("!I", binascii.crc32(message))


def chunk_frame(event_json: bytes, padding: str = "") -> bytes:
    """A ``chunk`` event carrying one Anthropic stream event."""
    wrapper: dict[str, str] = {"bytes": base64.b64encode(event_json).decode()}
    if padding:
        wrapper["p"] = padding
    headers = {":event-type": "chunk", ":content-type": _JSON, ":message-type": "event"}
    return encode_frame(headers, orjson.dumps(wrapper))


def exception_frame(exception_type: str, message: str) -> bytes:
    """A mid-stream exception (``:exception-type`` is lowerCamel, e.g. throttlingException)."""
    headers = {":exception-type": exception_type, ":content-type": _JSON}
    headers[":message-type"] = "exception"
    return encode_frame(headers, orjson.dumps({"message": message}))


def invocation_metrics(reply: Reply) -> dict[str, int]:
    usage = reply.usage
    return {
        "inputTokenCount": usage.input_tokens,
        "outputTokenCount": usage.output_tokens,
        "invocationLatency": 420,
        "firstByteLatency": 180,
        "cacheReadInputTokenCount": usage.cache_read_input_tokens,
        "cacheWriteInputTokenCount": usage.cache_creation_input_tokens,
    }


def stream_frames(reply: Reply, *, model: str, n: int) -> list[bytes]:
    """Every frame of a streamed reply: FakeAnthropic's events, wrapped as Bedrock does."""
    events = [sse.split(b"\ndata: ", 1)[1][:-2] for sse in stream_events(reply, model=model, n=n)]
    last = orjson.loads(events[-1])
    if last.get("type") == "message_stop":
        last[INVOCATION_METRICS_KEY] = invocation_metrics(reply)
        events[-1] = orjson.dumps(last)
    return [chunk_frame(e, _PADDING[: 1 + 7 * i % len(_PADDING)]) for i, e in enumerate(events)]


def _name_for(status: int) -> str:
    return next((k for k, v in _EXCEPTIONS.items() if v[0] == status), "InternalServerException")


def _message_for(name: str) -> str:
    return _EXCEPTIONS.get(name[:1].upper() + name[1:], (0, name))[1]


def bedrock_error(status: int, exception: str | None = None, message: str | None = None) -> Fault:
    """An HTTP error as Bedrock sends it (exception defaults to the one for ``status``)."""
    name = exception or _name_for(status)
    return Fault(status=status, error_type=name, error_message=message or _message_for(name))


def stream_exception(
    after_events: int, exception: str = "throttlingException", message: str | None = None
) -> Fault:
    """An exception frame after ``after_events`` chunk frames, then the end of the stream."""
    text = message or _message_for(exception)
    return Fault(error_after_events=after_events, error_type=exception, error_message=text)


# --- server ---------------------------------------------------------------------------------


def _error(status: int, name: str, message: str, rid: str) -> web.Response:
    headers = {
        "content-type": _JSON,
        "x-amzn-RequestId": rid,
        "x-amzn-ErrorType": name + _ERROR_TYPE_SUFFIX,
    }
    return web.Response(status=status, body=orjson.dumps({"message": message}), headers=headers)


def _foundation_models(rid: str) -> web.Response:
    summaries = [
        {"modelId": model_id, "providerName": "Anthropic", "modelLifecycle": {"status": "ACTIVE"}}
        for model_id in BEDROCK_DEFAULT_MODEL_MAP.values()
    ]
    body = orjson.dumps({"modelSummaries": summaries})
    return web.Response(body=body, headers={"content-type": _JSON, "x-amzn-RequestId": rid})


def _auth_problem(headers: CIMultiDictProxy[str]) -> tuple[str, str] | None:
    auth = headers.get("Authorization")
    if auth is None:
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    if auth.startswith("Bearer ") and len(auth) > len("Bearer "):
        return None  # a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK)
    match = _SIGV4.fullmatch(auth)
    if match is None or "X-Amz-Date" not in headers:
        return "IncompleteSignatureException", "Authorization header requires SigV4 parameters."
    if match["service"] != "bedrock":
        return "InvalidSignatureException", "Credential should be scoped to correct service."
    if not {"host", "x-amz-date"} <= set(match["signed"].split(";")):
        return "IncompleteSignatureException", "Host and X-Amz-Date must be signed."
    return None


class FakeBedrock(FakeServer):
    def __init__(
        self,
        default: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accepted_betas: Iterable[str] | None = None,
        accepted_versions: Iterable[str] = (BEDROCK_ANTHROPIC_VERSION,),
    ) -> None:
        super().__init__(default, host=host, port=port)
        accepted = accepted_betas
        if accepted is None:
            accepted = (v for v in DEFAULT_BETA_ALLOWLIST.values() if v is not None)
        self._accepted = frozenset(accepted)
        self._versions = frozenset(accepted_versions)

    def invoke_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if _ROUTE.fullmatch(r.path)]

    def messages_requests(self) -> list[RecordedRequest]:
        """Model requests: what FakeAnthropic's callers mean by messages."""
        return self.invoke_requests()

    # --- request handling -----------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        n, path, body = await self._take(request)
        rid = f"00000000-0000-4000-8000-{n:012d}"  # UUID-shaped, as AWS sends
        problem = _auth_problem(request.headers)
        if problem is not None:
            return _error(403, problem[0], problem[1], rid)
        if request.method == "GET" and path == "/foundation-models":
            return _foundation_models(rid)  # the control plane's listing ("test connection")
        route = _ROUTE.fullmatch(path)
        if request.method != "POST" or route is None:
            return _error(404, "UnknownOperationException", f"{request.method} {path}", rid)
        model = from_bedrock_model(urllib.parse.unquote(route["model"]))
        stream = route["action"] == "invoke-with-response-stream"
        scenario = self._next_scenario()
        fault = scenario.fault or _NO_FAULT
        self.active_streams += 1
        try:
            if (early := await self._before_headers(request, fault)) is not None:
                return early
            if fault.status is not None:
                return self._fault_response(fault, rid)
            invalid = self._validate(body)
            if invalid is not None:
                return _error(400, "ValidationException", invalid, rid)
            if stream:
                frames = stream_frames(scenario.reply, model=model, n=n)
                return await self._stream(request, frames, fault, rid)
            return self._message(scenario.reply, model, n, rid)
        except asyncio.CancelledError:
            self._note_cancel()
            raise
        finally:
            self.active_streams -= 1

    def _validate(self, body: bytes) -> str | None:
        try:
            payload: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            return _message_for("ValidationException")
        for key in ("model", "stream"):
            if key in payload:
                return f"{key}: Extra inputs are not permitted"
        if payload.get("anthropic_version") not in self._versions:
            return "Malformed input request: #: required key [anthropic_version] not found"
        betas = payload.get("anthropic_beta", [])
        if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
            return "anthropic_beta: Input should be a valid list of strings"
        if any(b not in self._accepted for b in betas):
            return "invalid beta flag"
        return None

    @staticmethod
    def _message(reply: Reply, model: str, n: int, rid: str) -> web.Response:
        metrics = invocation_metrics(reply)
        headers = {"content-type": _JSON, "x-amzn-RequestId": rid}
        for header, key in _METRIC_HEADERS:
            headers[f"x-amzn-bedrock-{header}"] = str(metrics[key])
        body = orjson.dumps(message_json(reply, model=model, n=n))
        return web.Response(status=200, body=body, headers=headers)

    @staticmethod
    def _fault_response(fault: Fault, rid: str) -> web.Response:
        assert fault.status is not None
        if fault.body is not None:
            headers = {"content-type": fault.content_type, "x-amzn-RequestId": rid}
            response = web.Response(status=fault.status, body=fault.body, headers=headers)
        elif fault.error_type.endswith("Exception"):  # set by bedrock_error
            name = fault.error_type[:1].upper() + fault.error_type[1:]
            response = _error(fault.status, name, fault.error_message, rid)
        else:
            name = _name_for(fault.status)
            response = _error(fault.status, name, _message_for(name), rid)
        if fault.retry_after is not None:
            response.headers["retry-after"] = fault.retry_after
        return response

    async def _stream(
        self, request: web.BaseRequest, frames: list[bytes], fault: Fault, rid: str
    ) -> web.StreamResponse:
        headers = {
            "content-type": "application/vnd.amazon.eventstream",
            "x-amzn-RequestId": rid,
            "X-Amzn-Bedrock-Content-Type": _JSON,
        }
        name = fault.error_type
        if not name.endswith("Exception"):
            name = _STREAM_EXCEPTION_FOR.get(name, "internalServerException")
        error = exception_frame(name[:1].lower() + name[1:], fault.error_message)
        return await self._write_stream(request, headers, frames, fault, error)
