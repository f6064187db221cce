"""A faithful fake Anthropic Messages API: a real HTTP server (aiohttp) with fault injection.

Async use::

    async with FakeAnthropic() as fake:          # or: await fake.start() ... await fake.stop()
        fake.script(Scenario(fault=Fault(status=529)), Scenario())   # next two POST /v1/messages
        ...  # point a client at fake.url
        assert fake.messages_requests()[0].header("anthropic-version") == "2023-06-01"

Sync use (tests without an event loop, the CLI)::

    fake = FakeAnthropic()
    with ServerThread(fake.start, fake.stop):    # or: with ServerThread.for_fake(fake):
        urllib.request.urlopen(fake.url + "/v1/models")

Routes: ``POST /v1/messages`` (query ignored; SSE when the body has ``"stream": true``, else a
``Message`` JSON), ``POST /v1/messages/count_tokens``, ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET|HEAD /``; anything else is an Anthropic-shaped 404 (with
``reject_unknown_models``, so is a message for a model not in ``models``). Every request
is recorded before it is answered. Every response carries ``request-id: req_fake_<n>``, where
n counts all requests; ``msg_fake_<n>`` and ``toolu_fake_<n>_<index>`` use the same n, so the same
scenarios in the same order give the same bytes.

Faults (``Fault``) apply only to ``POST /v1/messages``, in this order: ``hang_before_headers``;
``first_byte_delay``; ``status`` (an HTTP error, JSON or the given body); then, for streaming
requests only, ``event_delay`` and one of ``drop_after_events`` (TCP abort, no chunked
terminator), ``error_after_events`` (an ``event: error`` frame, then a normal end) or
``hang_after_events`` (silence until the client leaves). Non-streaming requests ignore the
stream-only faults. A client that goes away mid-response increments ``cancelled_streams``.
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.parse
from typing import Any, Final

import orjson
from aiohttp import web

from sluice.testing.fake_server import FakeServer
from sluice.testing.recorded import RecordedRequest
from sluice.testing.scenarios import (
    Fault,
    Scenario,
    error_body,
    message_json,
    scenario_by_name,
    sse_event,
    stream_events,
)

__all__ = [
    "DEFAULT_MODELS",
    "FakeAnthropic",
    "RecordedRequest",
    "mock_upstream",
    "serve_forever",
]

DEFAULT_MODELS: Final = ("claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5-20251001")
_NO_FAULT: Final = Fault()
_SEEN_BODIES: Final = 1000
_SSE_CONTENT_TYPE: Final = "text/event-stream; charset=utf-8"
# http.HTTPStatus has no phrase for Anthropic's 529.
_REASONS: Final = {529: "Overloaded"}


def _display_name(model_id: str) -> str:
    """'claude-haiku-4-5-20251001' -> 'Claude Haiku 4.5'."""
    parts = [p for p in model_id.split("-") if not (p.isdigit() and len(p) == 8)]
    words = [p.capitalize() for p in parts if not p.isdigit()]
    version = ".".join(p for p in parts if p.isdigit())
    return " ".join([*words, version]) if version else " ".join(words)


def _model_info(model_id: str) -> dict[str, str]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": _display_name(model_id),
        "created_at": "2025-01-01T00:00:00Z",
    }


def _json_response(payload: Any, request_id: str, status: int = 200) -> web.Response:
    headers = {"request-id": request_id, "content-type": "application/json"}
    return web.Response(status=status, body=orjson.dumps(payload), headers=headers)


def _error_response(status: int, request_id: str, message: str | None = None) -> web.Response:
    headers = {"request-id": request_id, "content-type": "application/json"}
    body = error_body(status, request_id, message=message)
    return web.Response(status=status, body=body, headers=headers)


class FakeAnthropic(FakeServer):
    def __init__(
        self,
        default: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: list[str] | None = None,
        count_tokens_value: int | None = None,
        max_recorded: int | None = None,
        reject_unknown_models: bool = False,
    ) -> None:
        super().__init__(default, host=host, port=port, max_recorded=max_recorded)
        self._models = list(models) if models is not None else list(DEFAULT_MODELS)
        # Like the real API: POST /v1/messages for a model not in ``models`` is a 404.
        self._reject_unknown = reject_unknown_models
        self._count_tokens_value = count_tokens_value
        self._seen_bodies: dict[bytes, None] = {}  # for Scenario.first_attempt_fault

    def messages_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    # --- request handling -----------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get("Expect", "").lower() == "100-continue":
            # The low-level server has no expect handler; curl waits 1 s without this.
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        n, path, body = await self._take(request)
        method = request.method
        rid = f"req_fake_{n}"

        if path == "/v1/messages" and method == "POST":
            return await self._messages(request, body, n, rid)
        if path == "/v1/messages/count_tokens" and method == "POST":
            value = self._count_tokens_value
            tokens = value if value is not None else max(1, len(body) // 4)
            return _json_response({"input_tokens": tokens}, rid)
        if method == "GET" and path == "/v1/models":
            data = [_model_info(m) for m in self._models]
            first, last = (self._models[0], self._models[-1]) if self._models else (None, None)
            page = {"data": data, "has_more": False, "first_id": first, "last_id": last}
            return _json_response(page, rid)
        if method == "GET" and path.startswith("/v1/models/"):
            model_id = urllib.parse.unquote(path.removeprefix("/v1/models/"))
            if model_id in self._models:
                return _json_response(_model_info(model_id), rid)
            return _error_response(404, rid, f"model: {model_id}")
        if path == "/" and method in ("GET", "HEAD"):
            return web.Response(text="ok", headers={"request-id": rid})
        return _error_response(404, rid, f"Not found: {method} {path}")

    async def _messages(
        self, request: web.BaseRequest, body: bytes, n: int, rid: str
    ) -> web.StreamResponse:
        scenario = self._next_scenario()
        fault = scenario.fault or _NO_FAULT
        if scenario.first_attempt_fault is not None and self._first_attempt(body):
            fault = scenario.first_attempt_fault
        self.active_streams += 1
        try:
            if (early := await self._before_headers(request, fault)) is not None:
                return early
            if fault.status is not None:
                return self._fault_response(fault, rid)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict):
                return _error_response(400, rid, "Request body must be a JSON object.")
            model = payload.get("model")
            model = model if isinstance(model, str) else "claude-unknown"
            if self._reject_unknown and model not in self._models:
                return _error_response(404, rid, f"model: {model}")
            reply = scenario.reply_for(payload)
            if payload.get("stream") is True:
                events = stream_events(reply, model=model, n=n)
                return await self._stream(request, events, fault, rid)
            return _json_response(message_json(reply, model=model, n=n), rid)
        except asyncio.CancelledError:
            self._note_cancel()
            raise
        finally:
            self.active_streams -= 1

    def _first_attempt(self, body: bytes) -> bool:
        """True the first time this body is seen (a bounded memory of recent bodies)."""
        digest = hashlib.sha256(body).digest()
        if digest in self._seen_bodies:
            return False
        self._seen_bodies[digest] = None
        if len(self._seen_bodies) > _SEEN_BODIES:
            self._seen_bodies.pop(next(iter(self._seen_bodies)))
        return True

    @staticmethod
    def _fault_response(fault: Fault, rid: str) -> web.Response:
        assert fault.status is not None
        body = fault.body if fault.body is not None else error_body(fault.status, rid)
        headers = {"request-id": rid, "content-type": fault.content_type}
        if fault.retry_after is not None:
            headers["retry-after"] = fault.retry_after
        if fault.should_retry is not None:
            headers["x-should-retry"] = fault.should_retry
        reason = _REASONS.get(fault.status)
        return web.Response(status=fault.status, reason=reason, body=body, headers=headers)

    async def _stream(
        self, request: web.BaseRequest, events: list[bytes], fault: Fault, rid: str
    ) -> web.StreamResponse:
        headers = {
            "content-type": _SSE_CONTENT_TYPE,
            "cache-control": "no-cache",
            "request-id": rid,
        }
        error = {"type": fault.error_type, "message": fault.error_message}
        return await self._write_stream(
            request, headers, events, fault, sse_event("error", {"type": "error", "error": error})
        )


def mock_upstream(
    scenario_name: str, *, host: str = "127.0.0.1", port: int = 0, bash_command: str | None = None
) -> FakeAnthropic:
    """The fake upstream `sluice mock anthropic` runs (bounded record of requests)."""
    extra = {"bash_command": bash_command} if bash_command is not None else {}
    scenario = scenario_by_name(scenario_name, **extra)
    return FakeAnthropic(scenario, host=host, port=port, max_recorded=100)


async def serve_forever(port: int, scenario_name: str, host: str = "127.0.0.1") -> None:
    """Run a fake upstream with a named scenario until cancelled (`sluice mock anthropic`)."""
    async with mock_upstream(scenario_name, host=host, port=port) as fake:
        print(
            f"Fake Anthropic upstream (DEMO, not a real model) listening on {fake.url} "
            f"scenario={scenario_name}",
            flush=True,
        )
        await asyncio.Event().wait()
