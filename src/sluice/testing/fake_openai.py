"""A faithful fake OpenAI Chat Completions API, scripted with the same ``Scenario``/``Reply``/
``Fault`` as the fake Anthropic upstream, so one scenario drives every provider::

    async with FakeOpenAI() as fake:
        fake.script(Scenario(fault=Fault(status=429, retry_after="2")), Scenario())
        client = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test")

Routes: ``POST /v1/chat/completions`` and the Azure shape
``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` (a ChatCompletion,
or ``data: {chunk}`` lines ending in ``data: [DONE]`` when ``stream`` is true), ``GET
/v1/models``. Replies follow the real API: text content deltas; tool calls as ``tool_calls``
fragments (id, type and name in the first, then the arguments in pieces of the block's
``fragment_size``); thinking as ``reasoning_content`` deltas (what vLLM/DeepSeek-style servers
send; OpenAI itself never shows it); ``finish_reason`` on the last choice chunk; and, only when
``stream_options.include_usage`` is set, a final chunk with empty ``choices`` and ``usage``
whose ``prompt_tokens`` include ``prompt_tokens_details.cached_tokens`` (cache reads). Cache
writes, which OpenAI does not report, are sent as ``cache_write_tokens`` (OpenRouter's field)
when non-zero.

Checks: ``Authorization: Bearer <key>`` (or Azure's ``api-key``; ``api_key`` if given) → 401;
route → 404; the body (a JSON object with ``model`` and ``messages``) → 400. Errors are OpenAI's
``{"error": {"message", "type", "param", "code"}}``. Faults behave as in FakeAnthropic:
``hang_before_headers``, ``first_byte_delay``, ``status`` (+ ``retry_after``,
``should_retry``; ``body``/``content_type`` verbatim, e.g. ``Fault.html``), and for streams
``event_delay``, ``drop_after_events`` (TCP abort), ``hang_after_events`` and
``error_after_events`` (an error chunk, ``data: {"error": ...}``, as OpenAI sends mid-stream).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final

import orjson
from aiohttp import web

from sluice.testing.fake_server import FakeServer
from sluice.testing.recorded import RecordedRequest
from sluice.testing.scenarios import (
    Fault,
    Reply,
    Scenario,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)

__all__ = ["FakeOpenAI", "completion_json", "stream_chunks"]

_NO_FAULT: Final = Fault()
_ROUTE: Final = re.compile(r"/v1/chat/completions|/openai/deployments/[^/]+/chat/completions")
_CREATED: Final = 1_764_000_000
# HTTP status → (OpenAI error type, code, message).
_ERRORS: Final = {
    400: ("invalid_request_error", None, "Invalid request (fake upstream)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
# A Fault's Anthropic error type (the scenarios' vocabulary) → OpenAI's stream error code.
_STREAM_CODES: Final = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate_limit_exceeded",
    "api_error": "server_error",
}


def error_json(status: int, message: str | None = None) -> bytes:
    kind, code, default = _ERRORS.get(status, ("server_error", None, f"Upstream error {status}."))
    error = {"message": message or default, "type": kind, "param": None, "code": code}
    return orjson.dumps({"error": error})


def _split(text: str, parts: int) -> list[str]:
    k = max(1, min(parts, len(text)))
    bounds = [len(text) * i // k for i in range(k + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(k)] if text else []


def _call_id(block: ToolUseBlock, n: int, index: int) -> str:
    return block.id if block.id is not None else f"call_fake_{n}_{index}"


def _usage(reply: Reply) -> dict[str, Any]:
    u = reply.usage
    details: dict[str, int] = {"cached_tokens": u.cache_read_input_tokens, "audio_tokens": 0}
    if u.cache_creation_input_tokens:
        details["cache_write_tokens"] = u.cache_creation_input_tokens
    prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if any(isinstance(b, ToolUseBlock) for b in reply.blocks) else "stop"


def stream_chunks(reply: Reply, *, model: str, n: int, include_usage: bool) -> list[bytes]:
    """Every ``data:`` line of a streamed reply, ``[DONE]`` included, one bytes each."""
    cid = reply.message_id or f"chatcmpl-fake{n}"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    tool_index = 0
    for index, block in enumerate(reply.blocks):
        if isinstance(block, TextBlock):
            out += [chunk({"content": t}) for t in _split(block.text, block.chunks)]
        elif isinstance(block, ThinkingBlock):
            out += [chunk({"reasoning_content": t}) for t in _split(block.thinking, block.chunks)]
        else:
            raw = orjson.dumps(block.input).decode()
            size = max(1, block.fragment_size)
            function = {"name": block.name, "arguments": ""}
            first = {"index": tool_index, "id": _call_id(block, n, index), "type": "function"}
            out.append(chunk({"tool_calls": [{**first, "function": function}]}))
            for i in range(0, len(raw), size):
                frag = {"index": tool_index, "function": {"arguments": raw[i : i + size]}}
                out.append(chunk({"tool_calls": [frag]}))
            tool_index += 1
    out.append(chunk({}, _finish_reason(reply)))
    if include_usage:
        last = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": _usage(reply),
        }
        out.append(b"data: " + orjson.dumps(last) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def completion_json(reply: Reply, *, model: str, n: int) -> dict[str, Any]:
    """The non-streaming ChatCompletion for a reply."""
    text = "".join(b.text for b in reply.blocks if isinstance(b, TextBlock))
    calls = [
        {
            "id": _call_id(b, n, i),
            "type": "function",
            "function": {"name": b.name, "arguments": orjson.dumps(b.input).decode()},
        }
        for i, b in enumerate(reply.blocks)
        if isinstance(b, ToolUseBlock)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "logprobs": None}
    choice["finish_reason"] = _finish_reason(reply)
    return {
        "id": reply.message_id or f"chatcmpl-fake{n}",
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [choice],
        "usage": _usage(reply),
    }


def _json(payload: bytes, rid: str, status: int = 200) -> web.Response:
    headers = {"content-type": "application/json", "x-request-id": rid}
    return web.Response(status=status, body=payload, headers=headers)


class FakeOpenAI(FakeServer):
    def __init__(
        self,
        default: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        models: list[str] | None = None,
        max_recorded: int | None = None,
    ) -> None:
        super().__init__(default, host=host, port=port, max_recorded=max_recorded)
        self._api_key = api_key
        self._models = list(models) if models is not None else ["gpt-4.1", "gpt-4.1-mini"]

    @property
    def base_url(self) -> str:
        """What an OpenAI client (and a provider's ``base_url``) points at."""
        return self.url + "/v1"

    def completions_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if _ROUTE.fullmatch(r.path)]

    def messages_requests(self) -> list[RecordedRequest]:
        """Model requests: what FakeAnthropic's callers mean by messages."""
        return self.completions_requests()

    # --- request handling -----------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        n, path, body = await self._take(request)
        rid = f"req_oai_fake_{n}"
        if not self._authorized(request):
            return _json(error_json(401), rid, 401)
        if request.method == "GET" and path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": _CREATED, "owned_by": "fake"}
                for m in self._models
            ]
            return _json(orjson.dumps({"object": "list", "data": data}), rid)
        if request.method != "POST" or not _ROUTE.fullmatch(path):
            return _json(error_json(404, f"Unknown request URL: {request.method} {path}"), rid, 404)
        return await self._completions(request, body, n, rid)

    def _authorized(self, request: web.BaseRequest) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme == "Bearer" else request.headers.get("api-key", "")
        return bool(key) and self._api_key in (None, key)

    async def _completions(
        self, request: web.BaseRequest, body: bytes, n: int, rid: str
    ) -> web.StreamResponse:
        scenario = self._next_scenario()
        fault = scenario.fault or _NO_FAULT
        self.active_streams += 1
        try:
            if (early := await self._before_headers(request, fault)) is not None:
                return early
            if fault.status is not None:
                return self._fault_response(fault, rid)
            try:
                payload: Any = orjson.loads(body)
            except orjson.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
                return _json(error_json(400, "'messages' is a required property"), rid, 400)
            model = payload.get("model")
            if not isinstance(model, str) or not model:
                return _json(error_json(400, "you must provide a model parameter"), rid, 400)
            if payload.get("stream") is True:
                options = payload.get("stream_options") or {}
                usage = isinstance(options, dict) and options.get("include_usage") is True
                chunks = stream_chunks(scenario.reply, model=model, n=n, include_usage=usage)
                return await self._stream(request, chunks, fault, rid)
            return _json(orjson.dumps(completion_json(scenario.reply, model=model, n=n)), rid)
        except asyncio.CancelledError:
            self._note_cancel()
            raise
        finally:
            self.active_streams -= 1

    @staticmethod
    def _fault_response(fault: Fault, rid: str) -> web.Response:
        assert fault.status is not None
        body = fault.body if fault.body is not None else error_json(fault.status)
        headers = {"content-type": fault.content_type, "x-request-id": rid}
        if fault.retry_after is not None:
            headers["retry-after"] = fault.retry_after
        if fault.should_retry is not None:
            headers["x-should-retry"] = fault.should_retry
        return web.Response(status=fault.status, body=body, headers=headers)

    async def _stream(
        self, request: web.BaseRequest, chunks: list[bytes], fault: Fault, rid: str
    ) -> web.StreamResponse:
        headers = {"content-type": "text/event-stream; charset=utf-8", "x-request-id": rid}
        code = _STREAM_CODES.get(fault.error_type, "server_error")
        error = {"message": fault.error_message, "type": code, "code": code}
        error_part = b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        return await self._write_stream(request, headers, chunks, fault, error_part)
