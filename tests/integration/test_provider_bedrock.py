"""Bedrock and Vertex through a running gateway: betas, SigV4, model ids both ways, error
mapping, mid-stream exception frames. The Anthropic lane is the control (betas unchanged)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sluice.testing.fake_bedrock import FakeBedrock, bedrock_error, stream_exception
from sluice.testing.fake_vertex import FakeVertex, vertex_error
from sluice.testing.scenarios import Reply, Scenario, TextBlock, scenario_by_name

from lanes import AWS_KEY_ID, AWS_SECRET, MODEL, Lane, lane
from support import fixture_request

FIXTURE = "10-tool-loop-turn1.json"
RENAMED = "advanced-tool-use-2025-11-20"  # Bedrock and Vertex know it as tool-search-tool


@pytest.fixture
async def bedrock(tmp_path: Path) -> AsyncIterator[Lane]:
    async with lane("bedrock", tmp_path) as running:
        yield running


def _vk_headers(headers: list[tuple[str, str]], vk: str) -> dict[str, str]:
    skip = {"host", "content-length", "connection", "accept-encoding", "x-api-key"}
    out = {k: v for k, v in headers if k.lower() not in skip}
    out["authorization"] = f"Bearer {vk}"
    return out


async def _post(lane_: Lane, body: bytes, headers: dict[str, str]) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(lane_.gateway.url + "/v1/messages?beta=true", data=body, headers=headers) as r,
    ):
        return r.status, r.headers, await r.read()


def _simple(stream: bool, model: str = MODEL) -> bytes:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def _events(raw: bytes) -> list[tuple[str, Any]]:
    found = re.findall(rb"event: (\S+)\ndata: (.*)\n\n", raw)
    return [(name.decode(), orjson.loads(data)) for name, data in found]


# --- betas ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "bedrock", "vertex"])
async def test_claude_code_betas_per_upstream(kind: str, tmp_path: Path) -> None:
    headers, body = fixture_request(FIXTURE)
    async with lane(kind, tmp_path) as up:
        up.fake.set_default(scenario_by_name("tool_bash"))
        sent = _vk_headers(headers, up.gateway.key)
        sent["anthropic-beta"] += f",{RENAMED}"
        status, _, raw = await _post(up, body, sent)
        assert status == 200, raw
        upstream = up.fake.messages_requests()[-1]  # type: ignore[attr-defined]
    original = orjson.loads(body)
    if kind == "anthropic":
        # Byte-for-byte: the header and the body reach Anthropic unchanged.
        assert upstream.header("anthropic-beta") == sent["anthropic-beta"]
        assert upstream.body == body
        return
    forwarded = orjson.loads(upstream.body)
    if kind == "bedrock":
        assert upstream.header("anthropic-beta") is None  # betas travel in the body
        assert forwarded["anthropic_beta"] == [
            "context-1m-2025-08-07",
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27",
            "tool-search-tool-2025-10-19",
        ]
        assert forwarded["anthropic_version"] == "bedrock-2023-05-31"
        expected = {k: v for k, v in original.items() if k not in ("model", "stream")}
        assert {k: v for k, v in forwarded.items() if not k.startswith("anthropic_")} == expected
        assert upstream.path == "/model/us.anthropic.claude-opus-4-8-v1/invoke-with-response-stream"
    else:
        # Vertex keeps betas in the header (protocols.md §6), filtered and renamed; it refuses
        # context-management, so the body member that needs it goes too.
        assert upstream.header("anthropic-beta") == (
            "context-1m-2025-08-07,interleaved-thinking-2025-05-14,tool-search-tool-2025-10-19"
        )
        assert forwarded["anthropic_version"] == "vertex-2023-10-16"
        expected = {k: v for k, v in original.items() if k not in ("model", "context_management")}
        assert {k: v for k, v in forwarded.items() if k != "anthropic_version"} == expected
        assert upstream.path.endswith("/models/claude-opus-4-8:streamRawPredict")


async def test_beta_table_extends_from_config(tmp_path: Path) -> None:
    extra = "betas: {team-beta-2026-01-01: team-beta-bedrock, "
    extra += "interleaved-thinking-2025-05-14: null}"
    fake = FakeBedrock(accepted_betas=["team-beta-bedrock"])
    async with lane("bedrock", tmp_path, extra, fake) as up:
        beta = "team-beta-2026-01-01,interleaved-thinking-2025-05-14"
        headers = {"authorization": f"Bearer {up.gateway.key}", "anthropic-beta": beta}
        status, _, raw = await _post(up, _simple(False), headers)
        assert status == 200, raw
        assert orjson.loads(fake.invoke_requests()[-1].body)["anthropic_beta"] == [
            "team-beta-bedrock"
        ]


# --- SigV4 and model ids ----------------------------------------------------------------------


async def test_sigv4_signature_verifies(bedrock: Lane) -> None:
    status, _, raw = await _post(bedrock, _simple(False), {"x-api-key": bedrock.gateway.key})
    assert status == 200, raw
    recorded = bedrock.fake.invoke_requests()[-1]  # type: ignore[attr-defined]
    auth = recorded.header("authorization")
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(\w+)/(\d{8})/us-east-1/bedrock/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        auth or "",
    )
    assert match is not None, auth
    assert match[1] == AWS_KEY_ID
    # Recompute the signature from what arrived: it must match exactly.
    signed = match[3].split(";")
    headers = {name: recorded.header(name) for name in signed}
    request = AWSRequest(
        method="POST", url=bedrock.fake.url + recorded.path, data=recorded.body, headers=headers
    )
    request.context["timestamp"] = recorded.header("x-amz-date")
    signer = SigV4Auth(Credentials(AWS_KEY_ID, AWS_SECRET), "bedrock", "us-east-1")
    canonical = signer.canonical_request(request)
    assert signer.signature(signer.string_to_sign(request, canonical), request) == match[4]
    assert AWS_SECRET not in str(recorded.headers)


async def test_model_ids_map_both_ways(bedrock: Lane) -> None:
    key = {"x-api-key": bedrock.gateway.key}
    # Default table: a dated id with ':' in it, percent-encoded in the path.
    status, _, raw = await _post(bedrock, _simple(False, "claude-haiku-4-5-20251001"), key)
    assert status == 200, raw
    path = bedrock.fake.invoke_requests()[-1].path  # type: ignore[attr-defined]
    assert path == "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"
    assert orjson.loads(raw)["model"] == "claude-haiku-4-5-20251001"
    # Config extension (model_map), and a reply naming the Bedrock id is mapped back.
    reply = Reply([TextBlock("x")], model="us.anthropic.claude-opus-4-8-v1")
    bedrock.fake.set_default(Scenario(reply))
    status, _, raw = await _post(bedrock, _simple(False, "claude-opus-4-8"), key)
    assert status == 200, raw
    path = bedrock.fake.invoke_requests()[-1].path  # type: ignore[attr-defined]
    assert path == "/model/us.anthropic.claude-opus-4-8-v1/invoke"
    assert orjson.loads(raw)["model"] == "claude-opus-4-8"


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        (bedrock_error(429), 429, "rate_limit_error"),
        (bedrock_error(503), 529, "overloaded_error"),
        (bedrock_error(429, "ModelNotReadyException", "not ready"), 529, "overloaded_error"),
        (bedrock_error(400), 400, "invalid_request_error"),
        (bedrock_error(403), 403, "permission_error"),
        (bedrock_error(500), 500, "api_error"),
    ],
)
async def test_bedrock_http_errors_become_anthropic(
    bedrock: Lane, fault: Any, status: int, error_type: str
) -> None:
    retry = status == 429
    if retry:
        fault = type(fault)(**{**fault.__dict__, "retry_after": "7"})
    bedrock.fake.script(Scenario(fault=fault))
    got, headers, raw = await _post(bedrock, _simple(True), {"x-api-key": bedrock.gateway.key})
    assert got == status
    body = orjson.loads(raw)
    assert body["type"] == "error" and body["error"]["type"] == error_type
    assert body["error"]["message"]
    if retry:
        assert headers["retry-after"] == "7"


async def test_vertex_google_errors_become_anthropic(tmp_path: Path) -> None:
    async with lane("vertex", tmp_path) as up:
        assert isinstance(up.fake, FakeVertex)
        up.fake.script(Scenario(fault=vertex_error(429, wrapped=True)))
        status, _, raw = await _post(up, _simple(False), {"x-api-key": up.gateway.key})
    assert status == 429
    assert orjson.loads(raw)["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [
        ("throttlingException", "rate_limit_error"),
        ("serviceUnavailableException", "overloaded_error"),
        ("validationException", "invalid_request_error"),
        ("modelStreamErrorException", "api_error"),
    ],
)
async def test_midstream_exception_frames(bedrock: Lane, exception: str, error_type: str) -> None:
    bedrock.fake.script(Scenario(fault=stream_exception(3, exception)))
    status, _, raw = await _post(bedrock, _simple(True), {"x-api-key": bedrock.gateway.key})
    assert status == 200
    events = _events(raw)
    assert [name for name, _ in events[:3]] == ["message_start", "content_block_start", "ping"]
    name, payload = events[-1]
    assert name == "error" and payload["error"]["type"] == error_type
    assert len(events) == 4  # the stream ends at the error


async def test_invocation_metrics_stripped_or_kept(tmp_path: Path) -> None:
    body = _simple(True)
    async with lane("bedrock", tmp_path) as up:
        _, _, raw = await _post(up, body, {"x-api-key": up.gateway.key})
    assert b"amazon-bedrock-invocationMetrics" not in raw
    assert _events(raw)[-1] == ("message_stop", {"type": "message_stop"})
    (tmp_path / "keep").mkdir()
    async with lane("bedrock", tmp_path / "keep", "keep_invocation_metrics: true") as up:
        _, _, raw = await _post(up, body, {"x-api-key": up.gateway.key})
    assert _events(raw)[-1][1]["amazon-bedrock-invocationMetrics"]["inputTokenCount"] == 25
