"""A fake Google Vertex AI for Anthropic models: Google's front end on top of FakeAnthropic.

Vertex relays Anthropic's own Messages JSON and SSE, so this is a ``FakeAnthropic`` (same
lifecycle, recording, ``script``/``set_default``, stream faults and ``cancelled_streams``)
with Vertex's routes and checks in front::

    async with FakeVertex() as fake:
        fake.script(Scenario(fault=vertex_error(429)), Scenario())
        client = AsyncAnthropicVertex(base_url=fake.base_url, access_token="t",
                                      project_id=fake.project, region="us-east5")

Routes (``fake.base_url`` is ``fake.url + "/v1"``, like ``ANTHROPIC_VERTEX_BASE_URL``):
``POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict``
(a ``Message``), ``...:streamRawPredict`` (SSE byte-for-byte FakeAnthropic's for the same reply
and request number) and ``.../models/count-tokens:rawPredict`` (``{"input_tokens": N}``, the
model in the body); ``GET /v1/publishers/anthropic/models/{model}`` (``publishers.models.get``,
what "test connection" calls). ``model`` in replies is the Anthropic name of the URL's Vertex id.

Checks, in order: ``Authorization: Bearer <token>`` (``token`` if given) → 401; route → 404;
project → 404 (all Google-shaped); then, for predict routes, the scripted fault; the body (a
JSON object without ``model``, ``anthropic_version`` in ``accepted_versions``, ``stream``
matching the route) → 400 INVALID_ARGUMENT; every ``anthropic-beta`` name in
``accepted_betas`` → 400 in Anthropic's shape, the way Vertex relays Anthropic's refusal. The
anthropic SDK 2.x sends ``anthropic_version`` ``2026-10-21``, not ``vertex-2023-10-16``.

Faults: a ``status`` with no ``body`` answers Google's error JSON for that status (a status
Google has no code for, such as 529, answers Anthropic's, as Vertex relays it);
``vertex_error`` picks the Google status, message and the list-wrapped variant; ``body`` is
sent verbatim. Stream faults (``error_after_events``: an ``event: error``; drop; hang; delays)
and ``hang_before_headers`` behave exactly as in FakeAnthropic.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any, Final

import orjson
from aiohttp import web

from sluice.testing.fake_anthropic import FakeAnthropic, RecordedRequest
from sluice.testing.scenarios import Fault, Scenario, error_body, message_json, stream_events
from sluice.translate.vertex import (
    DEFAULT_BETA_ALLOWLIST,
    VERTEX_ANTHROPIC_VERSION,
    from_vertex_model,
)

__all__ = ["FakeVertex", "google_error_body", "vertex_error"]

_NO_FAULT: Final = Fault()
_JSON: Final = "application/json; charset=UTF-8"
_COUNT_TOKENS: Final = "count-tokens"
_ROUTE: Final = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
    r"/publishers/anthropic/models/(?P<model>[^/:]+):(?P<action>rawPredict|streamRawPredict)"
)
_PUBLISHER_MODEL: Final = re.compile(r"/v1/publishers/anthropic/models/(?P<model>[^/:@]+)")
# HTTP status → (google.rpc.Code name, a message in Google's words).
_GOOGLE_ERRORS: Final = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login"
        " cookie or other valid authentication credential.",
    ),
    403: ("PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied on resource."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: (
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model"
        " with base model: anthropic-claude. Please submit a quota increase request.",
    ),
    500: ("INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


def google_error_body(
    code: int, status: str | None = None, message: str | None = None, *, wrapped: bool = False
) -> bytes:
    """Google's error JSON; ``wrapped`` puts it in a one-element list, as some Vertex
    front-end errors come (protocols.md §6)."""
    default_status, default_message = _GOOGLE_ERRORS.get(code, ("UNKNOWN", "Unknown error."))
    error = {
        "code": code,
        "message": message or default_message,
        "status": status or default_status,
    }
    payload: Any = {"error": error}
    return orjson.dumps([payload] if wrapped else payload)


def vertex_error(
    status: int,
    google_status: str | None = None,
    message: str | None = None,
    *,
    wrapped: bool = False,
) -> Fault:
    """An HTTP error as Google's front end sends it (the status name defaults by code)."""
    return Fault(
        status=status, body=google_error_body(status, google_status, message, wrapped=wrapped)
    )


def _json(payload: Any) -> web.Response:
    return web.Response(body=orjson.dumps(payload), headers={"content-type": _JSON})


def _google(status: int, message: str | None = None) -> web.Response:
    headers = {"content-type": _JSON}
    return web.Response(
        status=status, body=google_error_body(status, message=message), headers=headers
    )


class FakeVertex(FakeAnthropic):
    def __init__(
        self,
        default: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        project: str = "test-project",
        accepted_betas: Iterable[str] | None = None,
        accepted_versions: Iterable[str] = (VERTEX_ANTHROPIC_VERSION,),
        token: str | None = None,
        count_tokens_value: int | None = None,
        max_recorded: int | None = None,
    ) -> None:
        super().__init__(
            default,
            host=host,
            port=port,
            count_tokens_value=count_tokens_value,
            max_recorded=max_recorded,
        )
        self.project = project
        if accepted_betas is None:
            accepted_betas = (v for v in DEFAULT_BETA_ALLOWLIST.values() if v is not None)
        self._accepted = frozenset(accepted_betas)
        self._versions = frozenset(accepted_versions)
        self._token = token

    async def __aenter__(self) -> FakeVertex:
        await self.start()
        return self

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def predict_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if _model_of(r.path) not in (None, _COUNT_TOKENS)]

    def count_tokens_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if _model_of(r.path) == _COUNT_TOKENS]

    def messages_requests(self) -> list[RecordedRequest]:
        """Predict requests: what FakeAnthropic's callers mean by messages."""
        return self.predict_requests()

    # --- request handling -----------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        n, path, body = await self._take(request)
        rid = f"req_vrtx_fake_{n}"

        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token.strip() or self._token not in (None, token):
            return _google(401)
        listed = _PUBLISHER_MODEL.fullmatch(path)
        if request.method == "GET" and listed is not None:  # publishers.models.get
            name = f"publishers/anthropic/models/{urllib.parse.unquote(listed['model'])}"
            return _json({"name": name, "versionId": "001", "launchStage": "GA"})
        route = _ROUTE.fullmatch(path)
        if request.method != "POST" or route is None:
            return _google(404, f"The requested URL {path} was not found on this server.")
        project = urllib.parse.unquote(route["project"])
        if project != self.project:
            return _google(404, f"Project `{project}` not found or not accessible.")
        model = urllib.parse.unquote(route["model"])
        if model == _COUNT_TOKENS:
            if route["action"] != "rawPredict":
                return _google(404, f"The requested URL {path} was not found on this server.")
            return self._count_tokens(request, body, rid)
        stream = route["action"] == "streamRawPredict"
        return await self._predict(request, body, from_vertex_model(model), stream, n, rid)

    async def _predict(
        self, request: web.BaseRequest, body: bytes, model: str, stream: bool, n: int, rid: str
    ) -> web.StreamResponse:
        scenario = self._next_scenario()
        fault = scenario.fault or _NO_FAULT
        self.active_streams += 1
        try:
            if (early := await self._before_headers(request, fault)) is not None:
                return early
            if fault.status is not None:
                return _fault_response(fault, rid)
            refusal = self._refuse_body(body, stream) or self._refuse_betas(request, rid)
            if refusal is not None:
                return refusal
            if stream:
                events = stream_events(scenario.reply, model=model, n=n)
                return await self._stream(request, events, fault, rid)
            return _json(message_json(scenario.reply, model=model, n=n))
        except asyncio.CancelledError:
            self._note_cancel()
            raise
        finally:
            self.active_streams -= 1

    def _count_tokens(self, request: web.BaseRequest, body: bytes, rid: str) -> web.Response:
        payload = _object(body)
        if payload is None or not isinstance(payload.get("model"), str):
            return _google(400, "model: Field required")
        version = payload.get("anthropic_version")  # optional here; the SDK adds it
        if version is not None and version not in self._versions:
            return _google(400, f"anthropic_version: unsupported value {version!r}")
        refusal = self._refuse_betas(request, rid)
        if refusal is not None:
            return refusal
        value = self._count_tokens_value
        return _json({"input_tokens": value if value is not None else max(1, len(body) // 4)})

    def _refuse_body(self, body: bytes, stream: bool) -> web.Response | None:
        payload = _object(body)
        if payload is None:
            return _google(400, "Invalid JSON payload received: the body must be a JSON object.")
        if "model" in payload:
            return _google(400, "model: Extra inputs are not permitted (the model is in the URL)")
        if payload.get("anthropic_version") not in self._versions:
            return _google(400, "anthropic_version: Field required or unsupported")
        if (payload.get("stream") is True) != stream:
            return _google(400, "stream must be true exactly when calling streamRawPredict")
        return None

    def _refuse_betas(self, request: web.BaseRequest, rid: str) -> web.Response | None:
        sent = [
            name.strip()
            for value in request.headers.getall("anthropic-beta", [])
            for name in value.split(",")
            if name.strip()
        ]
        unknown = [name for name in sent if name not in self._accepted]
        if not unknown:
            return None
        names = ", ".join(f"`{name}`" for name in unknown)
        message = (
            f"Unexpected value(s) {names} for the `anthropic-beta` header. Please consult our"
            " documentation at docs.anthropic.com or try again without the header."
        )
        headers = {"content-type": "application/json"}
        return web.Response(status=400, body=error_body(400, rid, message=message), headers=headers)


def _model_of(path: str) -> str | None:
    route = _ROUTE.fullmatch(path)
    return urllib.parse.unquote(route["model"]) if route else None


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def _fault_response(fault: Fault, rid: str) -> web.Response:
    assert fault.status is not None
    if fault.body is not None:
        body, content_type = fault.body, fault.content_type
    elif fault.status in _GOOGLE_ERRORS:
        body, content_type = google_error_body(fault.status), _JSON
    else:  # Anthropic's own error (e.g. 529 overloaded), relayed by Vertex
        body, content_type = error_body(fault.status, rid), "application/json"
    headers = {"content-type": content_type}
    if fault.retry_after is not None:
        headers["retry-after"] = fault.retry_after
    if fault.should_retry is not None:
        headers["x-should-retry"] = fault.should_retry
    reason = "Overloaded" if fault.status == 529 else None  # no http.HTTPStatus phrase for 529
    return web.Response(status=fault.status, reason=reason, body=body, headers=headers)
