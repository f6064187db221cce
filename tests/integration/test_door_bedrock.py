"""The Bedrock-shaped door (/bedrock): the official SDK's Bedrock client, with the virtual key
as its Bedrock API key, through every provider kind; errors in Bedrock's shape; the
listings Claude Code reads in Bedrock mode."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import anthropic
import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from sluice.testing import Reply, Scenario, TextBlock, ToolUseBlock
from sluice.testing.fake_bedrock import FakeBedrock
from sluice.testing.scenarios import FakeUsage

from lanes import KINDS, MODEL, lane
from support import Gateway

REPLY = Reply(
    [TextBlock("Listing files.", chunks=2), ToolUseBlock("Bash", {"command": "ls"})],
    usage=FakeUsage(input_tokens=40, output_tokens=12, cache_read_input_tokens=300),
)
PROFILE = "us.anthropic.claude-sonnet-4-6"  # the default map's id for claude-sonnet-4-6


def _bedrock(gateway: Gateway, key: str | None = None) -> anthropic.AsyncAnthropicBedrock:
    return anthropic.AsyncAnthropicBedrock(
        api_key=key or gateway.key,
        aws_region="us-east-1",
        base_url=f"{gateway.url}/bedrock",
        max_retries=0,
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_bedrock_door_stream_and_invoke(kind: str, tmp_path: Path) -> None:
    # The raw lane hands Bedrock the SDK's own anthropic_version, which Bedrock judges.
    sdk_version = ("bedrock-2023-05-31", "2026-10-21")
    fake = FakeBedrock(accepted_versions=sdk_version) if kind == "bedrock" else None
    async with lane(kind, tmp_path, fake=fake) as ln:
        ln.fake.set_default(Scenario(REPLY))  # type: ignore[attr-defined]
        async with _bedrock(ln.gateway) as client:
            async with client.messages.stream(
                model=PROFILE, max_tokens=256, messages=[{"role": "user", "content": "ls?"}]
            ) as stream:
                text = "".join([t async for t in stream.text_stream])
                streamed = await stream.get_final_message()
            created = await client.messages.create(
                model=PROFILE, max_tokens=256, messages=[{"role": "user", "content": "ls?"}]
            )
        assert text == "Listing files."
        for message in (streamed, created):
            assert [b.type for b in message.content] == ["text", "tool_use"]
            assert message.content[1].input == {"command": "ls"}  # type: ignore[union-attr]
            assert message.stop_reason == "tool_use"
            assert message.usage.output_tokens == 12
        rows = await ln.gateway.ledger_rows()
        assert [(r["ingress"], r["status"], r["streaming"]) for r in rows] == [
            ("bedrock", 200, True),
            ("bedrock", 200, False),
        ]
        assert {r["model_requested"] for r in rows} == {MODEL}
        assert all(r["cache_read_tokens"] == 300 for r in rows)


async def _post(
    gw: Gateway, path: str, body: bytes, key: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"authorization": f"Bearer {key or gw.key}", "content-type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.url + path, data=body, headers=headers) as response,
    ):
        headers = {k.lower(): v for k, v in response.headers.items()}
        return response.status, headers, await response.read()


def _frames(raw: bytes) -> list[tuple[dict[str, object], dict[str, object]]]:
    """(headers, payload JSON) per event-stream frame, decoded by botocore."""
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(dict(m.headers), orjson.loads(m.payload)) for m in buffer]


async def test_bedrock_door_event_stream_wire(tmp_path: Path) -> None:
    """What the AWS SDK in Claude Code decodes: chunk frames with base64 events, and Bedrock's
    invocation metrics on message_stop."""
    async with lane("anthropic", tmp_path) as ln:
        ln.fake.set_default(Scenario(REPLY))  # type: ignore[attr-defined]
        body = orjson.dumps(
            {
                "anthropic_version": "bedrock-2023-05-31",
                "anthropic_beta": ["interleaved-thinking-2025-05-14"],
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "hi"}],
            }
        )
        path = f"/bedrock/model/{PROFILE}/invoke-with-response-stream"
        status, headers, raw = await _post(ln.gateway, path, body)
        assert status == 200
        assert headers["content-type"] == "application/vnd.amazon.eventstream"
        frames = _frames(raw)
        assert all(h[":event-type"] == "chunk" for h, _ in frames)
        events = [orjson.loads(base64.b64decode(str(p["bytes"]))) for _, p in frames]
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
        metrics = events[-1]["amazon-bedrock-invocationMetrics"]
        assert metrics["inputTokenCount"] == 40 and metrics["outputTokenCount"] == 12
        sent = orjson.loads(ln.model_requests()[-1].body)  # type: ignore[attr-defined]
        assert sent["model"] == MODEL and sent["stream"] is True
        assert "anthropic_version" not in sent and "anthropic_beta" not in sent
        betas = ln.model_requests()[-1].header("anthropic-beta") or ""  # type: ignore[attr-defined]
        assert "interleaved-thinking-2025-05-14" in betas


async def test_bedrock_door_count_tokens(tmp_path: Path) -> None:
    async with lane("anthropic", tmp_path) as ln:
        invoke = {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hello there"}],
        }
        wrapped = {
            "input": {"invokeModel": {"body": base64.b64encode(orjson.dumps(invoke)).decode()}}
        }
        status, _, raw = await _post(
            ln.gateway, f"/bedrock/model/{PROFILE}/count-tokens", orjson.dumps(wrapped)
        )
        assert status == 200
        assert orjson.loads(raw)["inputTokens"] > 0
        counted = orjson.loads(ln.fake.requests[-1].body)  # type: ignore[attr-defined]
        assert set(counted) == {"model", "messages"}  # no InvokeModel-only members
        status, headers, raw = await _post(
            ln.gateway, f"/bedrock/model/{PROFILE}/count-tokens", b'{"input": {"converse": {}}}'
        )
        assert status == 400
        assert headers["x-amzn-errortype"].startswith("ValidationException")
        assert "invokeModel" in orjson.loads(raw)["message"]


async def test_bedrock_door_errors_in_bedrock_shape(tmp_path: Path) -> None:
    async with lane("anthropic", tmp_path) as ln:
        async with _bedrock(ln.gateway, key="sk-lw-not-a-key") as client:
            with pytest.raises(anthropic.AuthenticationError):
                await client.messages.create(
                    model=PROFILE, max_tokens=8, messages=[{"role": "user", "content": "x"}]
                )
        body = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":8,"messages":[]}'
        status, headers, raw = await _post(
            ln.gateway, "/bedrock/model/us.anthropic.nope-v1:0/invoke", body
        )
        assert status == 404
        assert headers["x-amzn-errortype"].startswith("ResourceNotFoundException")
        assert set(orjson.loads(raw)) == {"message"}
        status, headers, _ = await _post(ln.gateway, f"/bedrock/model/{PROFILE}/invoke", b"[]")
        assert status == 400
        assert headers["x-amzn-errortype"].startswith("ValidationException")


async def test_bedrock_listings_need_the_key(tmp_path: Path) -> None:
    async with lane("anthropic", tmp_path) as ln, aiohttp.ClientSession() as http:
        url = ln.gateway.url + "/bedrock/inference-profiles?type=SYSTEM_DEFINED"
        async with http.get(url) as response:
            assert response.status == 401
            assert "x-amzn-ErrorType" in response.headers
        auth = {"authorization": f"Bearer {ln.gateway.key}"}
        async with http.get(url, headers=auth) as response:
            profiles = (await response.json())["inferenceProfileSummaries"]
        assert PROFILE in {p["inferenceProfileId"] for p in profiles}
        async with http.get(
            ln.gateway.url + "/bedrock/foundation-models", headers=auth
        ) as response:
            models = (await response.json())["modelSummaries"]
        assert "anthropic.claude-sonnet-4-6" in {m["modelId"] for m in models}


async def test_raw_bedrock_lane_relays_bytes_both_ways(tmp_path: Path) -> None:
    """Bedrock door to a Bedrock provider: the client's body reaches Bedrock byte for byte,
    and Bedrock's event stream reaches the client byte for byte (credentials replaced)."""
    async with lane("bedrock", tmp_path) as ln:
        ln.fake.set_default(Scenario(REPLY))  # type: ignore[attr-defined]
        # Odd spacing and key order, a beta inside: any re-serialization would show.
        body = (
            b'{ "max_tokens":64,  "anthropic_version":"bedrock-2023-05-31",'
            b'"messages":[{"role":"user","content":"hi \\u00e9"}],"system":"s" }'
        )
        path = f"/bedrock/model/{PROFILE}/invoke-with-response-stream"
        status, _, raw = await _post(ln.gateway, path, body)
        assert status == 200, raw
        [sent] = ln.model_requests()
        assert sent.body == body  # type: ignore[attr-defined]
        assert sent.header("authorization").startswith("AWS4-HMAC-SHA256")  # type: ignore[attr-defined]
        async with FakeBedrock() as twin:  # a fresh fake answers its first request alike
            twin.set_default(Scenario(REPLY))
            direct = await _direct(twin.url, path.removeprefix("/bedrock"), body)
        assert raw == direct
        [row] = await ln.gateway.ledger_rows()
        assert (row["ingress"], row["provider"], row["output_tokens"]) == ("bedrock", "up", 12)
        assert row["cache_read_tokens"] == 300


async def _direct(url: str, path: str, body: bytes) -> bytes:
    """The same request straight to the fake (as Bedrock would answer the client itself)."""
    headers = {"authorization": "Bearer aws-key", "content-type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + path, data=body, headers=headers) as response,
    ):
        return await response.read()


async def test_a_bedrock_id_outside_the_map_reaches_a_bedrock_provider_as_sent(
    tmp_path: Path,
) -> None:
    """2.1.332's default Bedrock model (``us.anthropic.claude-opus-5-5``) is in no model map:
    a Bedrock provider gets it as the client named it, and Bedrock judges it."""
    async with lane("bedrock", tmp_path) as ln:
        body = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":8,"messages":[]}'
        path = "/bedrock/model/us.anthropic.claude-opus-5-5/invoke"
        status, _, raw = await _post(ln.gateway, path, body)
        assert status == 200, raw
        [sent] = ln.model_requests()
        assert sent.path.endswith("/model/us.anthropic.claude-opus-5-5/invoke")  # type: ignore[attr-defined]
        [row] = await ln.gateway.ledger_rows()
        assert (row["ingress"], row["model_requested"]) == ("bedrock", "claude-opus-5-5")
