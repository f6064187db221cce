"""Anthropic → Vertex AI: betas, body, model ids, URLs, errors, token sources, and the fake
Vertex over real HTTP driven by the official SDK's Vertex clients and by our own translation."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import google.auth
import orjson
import pytest
from aiohttp import web
from anthropic._constants import ANTHROPIC_API_VERSION
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.transport.urllib3 import Request
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDictProxy

from sluice.base.json_spans import as_text, iter_members
from sluice.providers.vertex_auth import CLOUD_PLATFORM_SCOPE, GoogleTokenSource, StaticTokenSource
from sluice.testing.fake_vertex import FakeVertex, google_error_body, vertex_error
from sluice.testing.scenarios import (
    Fault,
    Reply,
    Scenario,
    TextBlock,
    message_json,
    scenario_by_name,
    sse_event,
    stream_events,
)
from sluice.translate import bedrock
from sluice.translate.vertex import (
    DEFAULT_BETA_ALLOWLIST,
    DEFAULT_MODEL_MAP,
    count_tokens_url,
    filter_betas,
    from_vertex_model,
    members_without_beta,
    predict_url,
    to_vertex_body,
    to_vertex_count_tokens_body,
    to_vertex_model,
    vertex_base_url,
    vertex_error_to_anthropic,
)

from support import fixture_names, fixture_request, serve_app

CC_BETAS = (
    "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14,"
    "thinking-token-count-2026-05-13,context-management-2025-06-27,"
    "prompt-caching-scope-2026-01-05,mid-conversation-system-2026-04-07,effort-2025-11-24"
)
SONNET = "claude-sonnet-4-5-20250929"
SONNET_ID = "claude-sonnet-4-5@20250929"
PROJECT = "test-project"
REGION = "us-east5"
USER: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]


def _post_fixtures() -> list[tuple[str, dict[str, str], bytes]]:
    out = []
    for name in fixture_names():
        headers, body = fixture_request(name)
        if body:
            out.append((name, {k.lower(): v for k, v in headers}, body))
    return out


FIXTURES = _post_fixtures()
FIXTURE_NAMES = [n for n, _, _ in FIXTURES]


def _fixture(name: str) -> tuple[dict[str, str], bytes]:
    return next((h, b) for n, h, b in FIXTURES if n == name)


# --- betas ----------------------------------------------------------------------------------


def test_claude_code_betas_keep_only_the_ones_vertex_accepts() -> None:
    assert any(h.get("anthropic-beta") == CC_BETAS for _, h, _ in FIXTURES)
    assert filter_betas is bedrock.filter_betas  # one implementation for both clouds
    assert filter_betas(CC_BETAS, DEFAULT_BETA_ALLOWLIST) == [
        "context-1m-2025-08-07",
        "interleaved-thinking-2025-05-14",
    ]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_header_filters_to_allowlisted_names_in_order(name: str) -> None:
    header = _fixture(name)[0]["anthropic-beta"]
    sent = [b.strip() for b in header.split(",")]
    kept = filter_betas(header, DEFAULT_BETA_ALLOWLIST)
    assert kept == [DEFAULT_BETA_ALLOWLIST[b] for b in sent if DEFAULT_BETA_ALLOWLIST.get(b)]
    for refused in (
        "claude-code-20250219",
        "prompt-caching-scope-2026-01-05",
        "mid-conversation-system-2026-04-07",
        "effort-2025-11-24",
        "thinking-token-count-2026-05-13",
        "context-management-2025-06-27",
    ):
        assert refused in DEFAULT_BETA_ALLOWLIST and refused not in kept


def test_renames_duplicates_and_unknown_names() -> None:
    header = "advanced-tool-use-2025-11-20, tool-search-tool-2025-10-19,,future-beta-2027-01-01"
    assert filter_betas(header, DEFAULT_BETA_ALLOWLIST) == ["tool-search-tool-2025-10-19"]
    assert filter_betas(None, DEFAULT_BETA_ALLOWLIST) == []


def test_context_management_goes_with_its_beta() -> None:
    assert members_without_beta(filter_betas(CC_BETAS, DEFAULT_BETA_ALLOWLIST)) == {
        "context_management"
    }
    allow = {
        **DEFAULT_BETA_ALLOWLIST,
        "context-management-2025-06-27": "context-management-2025-06-27",
    }
    assert members_without_beta(filter_betas(CC_BETAS, allow)) == frozenset()


# --- body -----------------------------------------------------------------------------------


def _raw_members(raw: bytes) -> list[tuple[str, bytes]]:
    """(key, exact value bytes) of each top-level member, in order."""
    members = iter_members(as_text(raw), raw.index(b"{"))
    return [(key, raw[m.value_start : m.value_end]) for key, m in members]


def _check_body(original: bytes, drop: frozenset[str] = frozenset()) -> bytes:
    out = to_vertex_body(original, drop=drop)
    parsed, source = orjson.loads(out), orjson.loads(original)
    removed = {"model", "anthropic_version", *drop}
    kept = [k for k in source if k not in removed]
    assert list(parsed) == ["anthropic_version", *kept]
    assert parsed["anthropic_version"] == "vertex-2023-10-16"
    assert ("stream" in parsed) == ("stream" in source)  # stream stays, unlike Bedrock
    before = [m for m in _raw_members(original) if m[0] not in removed]
    assert _raw_members(out)[1:] == before  # every other member byte-for-byte, in order
    return out


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_body_keeps_every_other_member(name: str) -> None:
    headers, body = _fixture(name)
    _check_body(body)
    drop = members_without_beta(filter_betas(headers.get("anthropic-beta"), DEFAULT_BETA_ALLOWLIST))
    assert "context_management" not in orjson.loads(_check_body(body, drop))
    pretty = json.dumps(orjson.loads(body), indent=2, ensure_ascii=False).encode()
    _check_body(pretty, drop)


def test_client_sent_version_is_replaced() -> None:
    body = b'{"anthropic_version":"2023-06-01","max_tokens":1,"model":"m","stream":false}'
    assert to_vertex_body(body) == (
        b'{"anthropic_version":"vertex-2023-10-16","max_tokens":1,"stream":false}'
    )
    assert to_vertex_body(b' {"model":"m"} ') == b' {"anthropic_version":"vertex-2023-10-16"} '
    assert to_vertex_body(b"{}") == b'{"anthropic_version":"vertex-2023-10-16"}'


@pytest.mark.parametrize("bad", [b"", b"[1]", b'{"a":1', b"null", b"  "])
def test_a_body_that_is_not_an_object_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        to_vertex_body(bad)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["model", "stream", "messages", "anthropic_version", "système", "x"]),
        _json_values,
    ),
    st.booleans(),
    st.booleans(),
)
def test_any_object_keeps_its_other_members(body: dict[str, Any], pretty: bool, cut: bool) -> None:
    raw = json.dumps(body, indent=1 if pretty else None, ensure_ascii=pretty).encode()
    _check_body(raw, frozenset({"x"}) if cut else frozenset())


def test_count_tokens_body_keeps_the_model_as_the_vertex_id() -> None:
    _, body = _fixture("10-tool-loop-turn1.json")
    out = to_vertex_count_tokens_body(body, "claude-opus-4-8", drop={"context_management"})
    members = _raw_members(out)
    assert members[:2] == [
        ("anthropic_version", b'"vertex-2023-10-16"'),
        ("model", b'"claude-opus-4-8"'),
    ]
    skip = {"model", "context_management"}
    assert members[2:] == [m for m in _raw_members(body) if m[0] not in skip]


# --- model ids and URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "vertex_id", "back"),
    [
        (SONNET, SONNET_ID, SONNET),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5@20251001", None),
        ("claude-sonnet-4-20250514", "claude-sonnet-4@20250514", None),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet-v2@20241022", None),  # irregular
        ("claude-sonnet-4-5", SONNET_ID, SONNET),  # alias → the dated id, never back
        ("claude-opus-4-8", "claude-opus-4-8", None),  # newer models have no date
        ("claude-opus-4-6@default", "claude-opus-4-6@default", "claude-opus-4-6"),
    ],
)
def test_model_ids_both_ways(name: str, vertex_id: str, back: str | None) -> None:
    assert to_vertex_model(name) == vertex_id
    assert from_vertex_model(vertex_id) == (back or name)


def test_unknown_models_extra_mappings_and_resource_names() -> None:
    assert to_vertex_model("gpt-5") is None
    extra = {"claude-opus-4-8": "claude-opus-4-8@20261001", "fast": "claude-haiku-4-5@20251001"}
    assert to_vertex_model("claude-opus-4-8", extra) == "claude-opus-4-8@20261001"
    assert to_vertex_model("fast", extra) == "claude-haiku-4-5@20251001"
    assert to_vertex_model(SONNET, {SONNET: "x@1"}) == "x@1"  # extra wins
    assert from_vertex_model("claude-opus-4-8@20261001", extra) == "claude-opus-4-8"
    resource = "projects/p/locations/global/publishers/anthropic/models/claude-haiku-4-5@20251001"
    assert from_vertex_model(resource) == "claude-haiku-4-5-20251001"
    for alias, vertex_id in DEFAULT_MODEL_MAP.items():
        assert to_vertex_model(alias) == vertex_id


def test_urls_for_global_regional_and_multi_region_locations() -> None:
    models = "projects/p/locations/{r}/publishers/anthropic/models"
    assert predict_url("p", "global", SONNET_ID, True) == (
        "https://aiplatform.googleapis.com/v1/"
        + models.format(r="global")
        + "/claude-sonnet-4-5@20250929:streamRawPredict"
    )
    assert predict_url("p", REGION, SONNET_ID, False) == (
        "https://us-east5-aiplatform.googleapis.com/v1/"
        + models.format(r=REGION)
        + "/claude-sonnet-4-5@20250929:rawPredict"
    )
    assert count_tokens_url("p", "europe-west1") == (
        "https://europe-west1-aiplatform.googleapis.com/v1/"
        + models.format(r="europe-west1")
        + "/count-tokens:rawPredict"
    )
    assert vertex_base_url("eu") == "https://aiplatform.eu.rep.googleapis.com/v1"
    assert count_tokens_url("p", "us", "http://127.0.0.1:9/v1/") == (
        "http://127.0.0.1:9/v1/" + models.format(r="us") + "/count-tokens:rawPredict"
    )
    assert predict_url("a b", "global", "x/y", False).endswith(
        "/projects/a%20b/locations/global/publishers/anthropic/models/x%2Fy:rawPredict"
    )


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("google_status", "http", "status", "error_type"),
    [
        ("RESOURCE_EXHAUSTED", 429, 429, "rate_limit_error"),
        ("UNAVAILABLE", 503, 529, "overloaded_error"),
        ("INVALID_ARGUMENT", 400, 400, "invalid_request_error"),
        ("FAILED_PRECONDITION", 400, 400, "invalid_request_error"),
        ("PERMISSION_DENIED", 403, 403, "permission_error"),
        ("NOT_FOUND", 404, 404, "not_found_error"),
        ("UNAUTHENTICATED", 401, 401, "authentication_error"),
        ("DEADLINE_EXCEEDED", 504, 504, "timeout_error"),
        ("INTERNAL", 500, 500, "api_error"),
        ("SOMETHING_NEW", 503, 503, "overloaded_error"),  # unknown name: by HTTP status
    ],
)
def test_google_errors_map_to_anthropic_errors(
    google_status: str, http: int, status: int, error_type: str
) -> None:
    expected = (status, {"type": "error", "error": {"type": error_type, "message": "boom"}})
    for wrapped in (False, True):
        body = google_error_body(http, google_status, "boom", wrapped=wrapped)
        assert vertex_error_to_anthropic(http, body) == expected


def test_anthropic_errors_pass_through_and_garbage_maps_by_status() -> None:
    relayed = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": "req_vrtx_011",
    }
    assert vertex_error_to_anthropic(529, orjson.dumps(relayed)) == (529, relayed)
    status, body = vertex_error_to_anthropic(502, Fault.html(502).body or b"")
    assert (status, body["error"]["type"]) == (502, "api_error")
    assert vertex_error_to_anthropic(429, b"")[1]["error"]["type"] == "rate_limit_error"
    no_message = b'{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}'
    assert vertex_error_to_anthropic(429, no_message)[1]["error"]["message"]


# --- token sources --------------------------------------------------------------------------


class FakeCredentials:
    """The surface google-auth credentials show GoogleTokenSource, with a counting refresh."""

    def __init__(self, token: str | None = None, valid: bool = False, delay: float = 0.0) -> None:
        self.token = token
        self.valid = valid
        self.expired = token is not None and not valid
        self.delay = delay
        self.refreshes = 0
        self.threads: list[int] = []
        self.requests: list[Any] = []

    def refresh(self, request: Any) -> None:
        time.sleep(self.delay)  # blocking, like google-auth's HTTP call
        self.threads.append(threading.get_ident())
        self.requests.append(request)
        self.refreshes += 1
        self.token, self.valid, self.expired = f"ya29.fake-{self.refreshes}", True, False

    def expire(self) -> None:
        self.valid, self.expired = False, True


async def test_refresh_happens_in_a_thread_and_only_when_needed() -> None:
    creds = FakeCredentials()
    source = GoogleTokenSource(credentials=creds)
    assert await source.token() == "ya29.fake-1"
    assert creds.refreshes == 1 and creds.threads[0] != threading.get_ident()
    assert isinstance(creds.requests[0], Request)
    assert await source.token() == "ya29.fake-1"  # still valid: no refresh
    assert creds.refreshes == 1
    creds.expire()  # google-auth flips valid 3m45s before expiry
    assert await source.token() == "ya29.fake-2"
    assert creds.refreshes == 2
    ready = GoogleTokenSource(credentials=FakeCredentials("ya29.ready", valid=True))
    assert await ready.token() == "ya29.ready"


async def test_concurrent_callers_share_one_refresh_and_the_loop_keeps_running() -> None:
    creds = FakeCredentials(delay=0.2)
    source = GoogleTokenSource(credentials=creds)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        tokens = await asyncio.gather(*(source.token() for _ in range(5)))
    finally:
        task.cancel()
    assert tokens == ["ya29.fake-1"] * 5 and creds.refreshes == 1
    assert ticks >= 5  # the loop ran while the refresh slept in its thread


async def test_adc_loads_in_a_thread_and_gives_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = FakeCredentials()
    calls: list[tuple[Any, int]] = []

    def fake_default(scopes: Any = None, **_: Any) -> tuple[FakeCredentials, str]:
        calls.append((scopes, threading.get_ident()))
        return creds, "adc-project"

    monkeypatch.setattr(google.auth, "default", fake_default)
    source = GoogleTokenSource()
    assert source.project_id is None
    assert await source.token() == "ya29.fake-1"
    assert calls == [([CLOUD_PLATFORM_SCOPE], calls[0][1])] and calls[0][1] != threading.get_ident()
    assert source.project_id == "adc-project"
    await source.token()
    assert len(calls) == 1


async def test_static_source_and_bad_info() -> None:
    assert await StaticTokenSource("t").token() == "t"
    with pytest.raises(ValueError):
        GoogleTokenSource({"type": "authorized_user"})


@pytest.fixture
async def token_endpoint() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        seen.append(dict(await request.post()))  # type: ignore[arg-type]
        return web.json_response({"access_token": "ya29.sa", "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/token", token)
    async with serve_app(app) as url:
        yield f"{url}/token", seen


async def test_a_real_service_account_key_refreshes_through_google_auth(
    token_endpoint: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = token_endpoint
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "sa-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "gw@sa-project.iam.gserviceaccount.com",
        "token_uri": url,
    }
    source = GoogleTokenSource(info)
    assert source.project_id == "sa-project"
    # The token endpoint runs on this loop: a refresh on the loop would deadlock here.
    assert await source.token() == "ya29.sa"
    assert await source.token() == "ya29.sa"
    assert len(seen) == 1
    assert seen[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims_b64 = seen[0]["assertion"].split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))
    assert claims["scope"] == CLOUD_PLATFORM_SCOPE
    assert claims["iss"] == "gw@sa-project.iam.gserviceaccount.com"


# --- the fake over HTTP: the official SDK ---------------------------------------------------


def _sdk_client(fake: FakeVertex, region: str = REGION, token: str = "test-token") -> Any:
    return anthropic.AsyncAnthropicVertex(
        base_url=fake.base_url,
        access_token=token,
        project_id=fake.project,
        region=region,
        max_retries=0,
    )


def _sdk_fake(**kwargs: Any) -> FakeVertex:
    # anthropic 2.x puts its own API version in Vertex bodies
    return FakeVertex(accepted_versions={"vertex-2023-10-16", ANTHROPIC_API_VERSION}, **kwargs)


async def test_the_official_async_vertex_client_creates_streams_and_counts() -> None:
    async with _sdk_fake(count_tokens_value=42) as fake:
        client = _sdk_client(fake)
        async with client:
            fake.script(Scenario(Reply(blocks=[TextBlock("Hi there.")])))
            message = await client.messages.create(model=SONNET_ID, max_tokens=16, messages=USER)
            assert message.content[0].type == "text" and message.content[0].text == "Hi there."
            assert message.model == SONNET
            async with client.messages.stream(
                model=SONNET_ID, max_tokens=16, messages=USER
            ) as stream:
                final = await stream.get_final_message()
            assert final.content[0].type == "text"
            assert final.content[0].text == "Hello from the fake upstream."
            assert final.usage.output_tokens == 12
            count = await client.messages.count_tokens(model=SONNET_ID, messages=USER)
            assert count.input_tokens == 42
    base = f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models"
    created, streamed, counted = fake.requests
    assert created.path == f"{base}/{SONNET_ID}:rawPredict"
    assert streamed.path == f"{base}/{SONNET_ID}:streamRawPredict"
    assert counted.path == f"{base}/count-tokens:rawPredict"
    assert created.header("Authorization") == "Bearer test-token"
    assert "model" not in created.json() and "stream" not in created.json()
    assert streamed.json()["stream"] is True and "model" not in streamed.json()
    assert counted.json()["model"] == SONNET_ID
    assert fake.predict_requests() == [created, streamed]
    assert fake.count_tokens_requests() == [counted]


async def test_the_sdk_sees_betas_auth_and_quota_errors() -> None:
    async with _sdk_fake(token="test-token") as fake:
        async with _sdk_client(fake, region="global") as client:
            ok = await client.beta.messages.create(
                model=SONNET_ID,
                max_tokens=16,
                messages=USER,
                betas=["interleaved-thinking-2025-05-14"],
            )
            assert ok.content[0].type == "text"
            with pytest.raises(anthropic.BadRequestError, match="Unexpected value"):
                await client.beta.messages.create(
                    model=SONNET_ID,
                    max_tokens=16,
                    messages=USER,
                    betas=["prompt-caching-scope-2026-01-05"],
                )
            fake.script(Scenario(fault=vertex_error(429)))
            with pytest.raises(anthropic.RateLimitError, match="Quota exceeded"):
                await client.messages.create(model=SONNET_ID, max_tokens=16, messages=USER)
        async with _sdk_client(fake, token="wrong") as client:
            with pytest.raises(anthropic.AuthenticationError):
                await client.messages.create(model=SONNET_ID, max_tokens=16, messages=USER)
    assert fake.requests[0].path.startswith("/v1/projects/test-project/locations/global/")
    assert fake.requests[0].header("anthropic-beta") == "interleaved-thinking-2025-05-14"


async def test_the_official_sync_vertex_client_works_too() -> None:
    async with _sdk_fake() as fake:

        def call() -> anthropic.types.Message:
            client = anthropic.AnthropicVertex(
                base_url=fake.base_url,
                access_token="test-token",
                project_id=PROJECT,
                region=REGION,
                max_retries=0,
            )
            with client:
                return client.messages.create(model=SONNET_ID, max_tokens=8, messages=USER)

        message = await asyncio.to_thread(call)
    assert message.model == SONNET


# --- the fake over HTTP: our translation, checks and faults --------------------------------


@pytest.fixture
async def vertex() -> AsyncIterator[FakeVertex]:
    async with FakeVertex() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


BODY = to_vertex_body(orjson.dumps({"model": SONNET, "max_tokens": 8, "messages": USER}))
STREAM_BODY = to_vertex_body(
    orjson.dumps({"model": SONNET, "max_tokens": 8, "stream": True, "messages": USER})
)


async def post(
    fake: FakeVertex,
    session: aiohttp.ClientSession,
    *,
    stream: bool = False,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    url: str | None = None,
    timeout: aiohttp.ClientTimeout | None = None,
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    if body is None:
        body = STREAM_BODY if stream else BODY
    url = url or predict_url(PROJECT, REGION, SONNET_ID, stream, base_url=fake.base_url)
    sent = {"content-type": "application/json", "Authorization": "Bearer t", **(headers or {})}
    async with session.post(url, data=body, headers=sent, timeout=timeout) as resp:
        return resp.status, resp.headers, await resp.read()


async def test_a_claude_code_request_translated_by_us_passes_every_check(
    vertex: FakeVertex, session: aiohttp.ClientSession
) -> None:
    headers, body = _fixture("10-tool-loop-turn1.json")
    betas = filter_betas(headers["anthropic-beta"], DEFAULT_BETA_ALLOWLIST)
    vertex_body = to_vertex_body(body, drop=members_without_beta(betas))
    model = to_vertex_model(orjson.loads(body)["model"])
    assert model is not None
    reply = scenario_by_name("tool_bash").reply
    vertex.script(Scenario(reply))
    url = predict_url(PROJECT, "global", model, True, base_url=vertex.base_url)
    status, resp_headers, raw = await post(
        vertex, session, body=vertex_body, url=url, headers={"anthropic-beta": ",".join(betas)}
    )
    assert status == 200 and resp_headers["content-type"].startswith("text/event-stream")
    assert raw == b"".join(stream_events(reply, model="claude-opus-4-8", n=1))
    counted = to_vertex_count_tokens_body(body, model, drop=members_without_beta(betas))
    url = count_tokens_url(PROJECT, "global", base_url=vertex.base_url)
    status, _, raw = await post(vertex, session, body=counted, url=url)
    assert status == 200 and orjson.loads(raw) == {"input_tokens": len(counted) // 4}


async def test_json_reply_and_request_recording(
    vertex: FakeVertex, session: aiohttp.ClientSession
) -> None:
    status, headers, raw = await post(vertex, session, headers={"X-Trace": "a"})
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert orjson.loads(raw) == message_json(Reply(), model=SONNET, n=1)
    recorded = vertex.messages_requests()[0]
    assert (recorded.method, recorded.body, recorded.header("x-trace")) == ("POST", BODY, "a")


async def test_missing_or_wrong_bearer_is_401_without_using_a_scenario(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeVertex(token="right") as fake:
        fake.script(Scenario(fault=vertex_error(503)))
        for auth in ("", "Basic abc", "Bearer ", "Bearer wrong"):
            status, _, raw = await post(fake, session, headers={"Authorization": auth})
            assert status == 401
            assert orjson.loads(raw)["error"]["status"] == "UNAUTHENTICATED"
        status, _, _ = await post(fake, session, headers={"Authorization": "Bearer right"})
        assert status == 503


async def test_wrong_project_and_unknown_routes_are_404(
    vertex: FakeVertex, session: aiohttp.ClientSession
) -> None:
    other = predict_url("other-project", REGION, SONNET_ID, False, base_url=vertex.base_url)
    for url in (
        other,
        f"{vertex.base_url}/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/x",
        f"{vertex.base_url}/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/"
        "count-tokens:streamRawPredict",
    ):
        status, _, raw = await post(vertex, session, url=url)
        assert status == 404 and orjson.loads(raw)["error"]["status"] == "NOT_FOUND"
    async with session.get(vertex.base_url, headers={"Authorization": "Bearer t"}) as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    ("body", "stream", "needle"),
    [
        (b'{"model":"m","anthropic_version":"vertex-2023-10-16"}', False, "model"),
        (b'{"max_tokens":1}', False, "anthropic_version"),
        (b'{"anthropic_version":"2023-06-01"}', False, "anthropic_version"),
        (b'{"anthropic_version":"vertex-2023-10-16","stream":true}', False, "stream"),
        (b'{"anthropic_version":"vertex-2023-10-16"}', True, "stream"),
        (b"[]", False, "JSON"),
    ],
)
async def test_bodies_vertex_refuses(
    vertex: FakeVertex, session: aiohttp.ClientSession, body: bytes, stream: bool, needle: str
) -> None:
    status, _, raw = await post(vertex, session, body=body, stream=stream)
    error = orjson.loads(raw)["error"]
    assert (status, error["code"], error["status"]) == (400, 400, "INVALID_ARGUMENT")
    assert needle in error["message"]


async def test_betas_outside_the_accepted_set_are_refused_in_anthropics_shape(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeVertex(accepted_betas={"only-this-1"}) as fake:
        ok = {"anthropic-beta": "only-this-1"}
        assert (await post(fake, session, headers=ok))[0] == 200
        bad = {"anthropic-beta": "only-this-1,claude-code-20250219, effort-2025-11-24"}
        status, _, raw = await post(fake, session, headers=bad)
        assert status == 400
        assert orjson.loads(raw) == {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "Unexpected value(s) `claude-code-20250219`, `effort-2025-11-24` for"
                " the `anthropic-beta` header. Please consult our documentation at"
                " docs.anthropic.com or try again without the header.",
            },
            "request_id": "req_vrtx_fake_2",
        }
        url = count_tokens_url(PROJECT, REGION, base_url=fake.base_url)
        body = b'{"model":"claude-haiku-4-5@20251001","messages":[]}'
        assert (await post(fake, session, url=url, body=body, headers=bad))[0] == 400


async def test_count_tokens_checks_its_body(
    vertex: FakeVertex, session: aiohttp.ClientSession
) -> None:
    url = count_tokens_url(PROJECT, REGION, base_url=vertex.base_url)
    for body in (b'{"messages":[]}', b'{"model":"m","anthropic_version":"2023-06-01"}', b"x"):
        status, _, raw = await post(vertex, session, url=url, body=body)
        assert status == 400 and orjson.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
    plain = b'{"model":"claude-haiku-4-5@20251001","messages":[]}'  # Google's doc example shape
    assert (await post(vertex, session, url=url, body=plain))[0] == 200


@pytest.mark.parametrize(
    ("fault", "status", "google_status", "anthropic"),
    [
        (vertex_error(429), 429, "RESOURCE_EXHAUSTED", (429, "rate_limit_error")),
        (vertex_error(429, wrapped=True), 429, "RESOURCE_EXHAUSTED", (429, "rate_limit_error")),
        (Fault(status=503), 503, "UNAVAILABLE", (529, "overloaded_error")),
        (Fault(status=500), 500, "INTERNAL", (500, "api_error")),
        (vertex_error(403, message="no"), 403, "PERMISSION_DENIED", (403, "permission_error")),
        (
            vertex_error(400, "FAILED_PRECONDITION"),
            400,
            "FAILED_PRECONDITION",
            (400, "invalid_request_error"),
        ),
        (Fault(status=529), 529, None, (529, "overloaded_error")),  # Anthropic's, relayed
    ],
)
async def test_status_faults_are_google_shaped(
    vertex: FakeVertex,
    session: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    google_status: str | None,
    anthropic: tuple[int, str],
) -> None:
    vertex.script(Scenario(fault=fault))
    got, _, raw = await post(vertex, session, stream=True)
    assert got == status
    payload = orjson.loads(raw)
    if google_status is None:
        assert payload["type"] == "error"
    else:
        error = (payload[0] if isinstance(payload, list) else payload)["error"]
        assert (error["code"], error["status"]) == (status, google_status)
        assert isinstance(error["message"], str) and error["message"]
    mapped_status, mapped = vertex_error_to_anthropic(got, raw)
    assert (mapped_status, mapped["error"]["type"]) == anthropic


async def test_verbatim_bodies_and_retry_headers(
    vertex: FakeVertex, session: aiohttp.ClientSession
) -> None:
    vertex.script(
        Scenario(fault=Fault.html(502)),
        Scenario(fault=Fault(status=429, retry_after="3", should_retry="false")),
    )
    status, headers, raw = await post(vertex, session)
    assert status == 502 and headers["content-type"].startswith("text/html")
    assert raw == Fault.html(502).body
    status, headers, _ = await post(vertex, session)
    assert (status, headers["retry-after"], headers["x-should-retry"]) == (429, "3", "false")


async def test_mid_stream_error_event(vertex: FakeVertex, session: aiohttp.ClientSession) -> None:
    vertex.script(Scenario(fault=Fault(error_after_events=3, error_type="api_error")))
    status, _, raw = await post(vertex, session, stream=True)
    events = stream_events(Reply(), model=SONNET, n=1)
    error = {"type": "error", "error": {"type": "api_error", "message": "Overloaded"}}
    assert status == 200 and raw == b"".join(events[:3]) + sse_event("error", error)


async def test_tcp_drop_after_n_events(vertex: FakeVertex, session: aiohttp.ClientSession) -> None:
    vertex.script(Scenario(fault=Fault(drop_after_events=2)))
    received = b""
    url = predict_url(PROJECT, REGION, SONNET_ID, True, base_url=vertex.base_url)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(
            url, data=STREAM_BODY, headers={"Authorization": "Bearer t"}
        ) as resp:
            async for chunk in resp.content.iter_any():
                received += chunk
    assert received == b"".join(stream_events(Reply(), model=SONNET, n=1)[:2])


async def test_slow_first_byte(vertex: FakeVertex, session: aiohttp.ClientSession) -> None:
    vertex.script(Scenario(fault=Fault(first_byte_delay=0.3)))
    started = time.monotonic()
    assert (await post(vertex, session))[0] == 200
    assert time.monotonic() - started >= 0.3


async def test_hang_after_events_until_the_client_leaves(
    vertex: FakeVertex, session: aiohttp.ClientSession
) -> None:
    vertex.script(Scenario(fault=Fault(hang_after_events=1)))
    with pytest.raises(asyncio.TimeoutError):
        await post(vertex, session, stream=True, timeout=aiohttp.ClientTimeout(sock_read=0.3))
    assert await vertex.wait_cancelled(1, timeout=2.0)
    assert vertex.active_streams == 0


async def test_hang_before_headers_ends_when_the_fake_stops(
    session: aiohttp.ClientSession,
) -> None:
    fake = FakeVertex(Scenario(fault=Fault(hang_before_headers=True)))
    await fake.start()
    task = asyncio.create_task(post(fake, session))
    await asyncio.sleep(0.2)
    assert not task.done() and fake.active_streams == 1
    await fake.stop()
    with pytest.raises(aiohttp.ClientError):
        await task
    await fake.stop()  # idempotent


async def test_script_then_default_and_urls(session: aiohttp.ClientSession) -> None:
    async with FakeVertex(project="p-1") as fake:
        assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
        fake.script(Scenario(fault=vertex_error(500)), Scenario(Reply(blocks=[TextBlock("one")])))
        fake.set_default(Scenario(Reply(blocks=[TextBlock("default")])))
        url = predict_url("p-1", "global", SONNET_ID, False, base_url=fake.base_url)
        results = [await post(fake, session, url=url) for _ in range(3)]
        assert [r[0] for r in results] == [500, 200, 200]
        assert orjson.loads(results[1][2])["content"][0]["text"] == "one"
        assert orjson.loads(results[2][2])["content"][0]["text"] == "default"
        quoted = urllib.parse.quote(SONNET_ID, safe="")  # %40 decodes to the same model
        url = url.replace(SONNET_ID, quoted)
        assert orjson.loads((await post(fake, session, url=url))[2])["model"] == SONNET
