"""Governance on the lane: tool, MCP and URL policy in every mode, streaming and not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sluice.config.vk import VirtualKeyConfig
from sluice.testing import FakeAnthropic, Reply, Scenario, TextBlock, ToolUseBlock

from support import Gateway

TOOLS = [
    {"name": "Bash", "description": "Run a shell command", "input_schema": {"type": "object"}},
    {"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}},
    {"name": "mcp__github__create_issue", "description": "gh", "input_schema": {"type": "object"}},
]


def make_body(*, stream: bool = True, text: str = "do it", **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "model": "claude-opus-4-8",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        "tools": TOOLS,
        "max_tokens": 1024,
        **extra,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def reply_calling(name: str, text: str | None = "Let me do that.") -> Scenario:
    blocks: list[Any] = [TextBlock(text)] if text else []
    return Scenario(
        Reply([*blocks, ToolUseBlock(name, {"command": "rm -rf /tmp/x"})], message_id="msg_pinned")
    )


async def post(url: str, key: str, body: bytes) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/v1/messages", data=body, headers={"x-api-key": key}) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


async def direct(fake: FakeAnthropic, body: bytes) -> bytes:
    async with aiohttp.ClientSession() as s, s.post(f"{fake.url}/v1/messages", data=body) as r:
        return await r.read()


def policy(**rules: Any) -> VirtualKeyConfig:
    return VirtualKeyConfig.parse({"policy_rules": rules})


def error_frame(stream: bytes) -> dict[str, Any]:
    last = stream.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b"event: error\ndata: ")
    return orjson.loads(last.split(b"data: ", 1)[1])  # type: ignore[no-any-return]


def _norm(data: bytes) -> bytes:
    import re

    return re.sub(rb"toolu_fake_\d+_", b"toolu_fake_N_", data)


@pytest.mark.parametrize("text", ["Let me do that.", None], ids=["after-text", "tool-first"])
async def test_block_calls_stream_prefix_is_byte_identical(
    gateway: Gateway, fake: FakeAnthropic, text: str | None
) -> None:
    minted = await gateway.mint(config=policy(tools={"deny": ["^Bash$"]}))
    fake.set_default(reply_calling("Bash", text))
    body = make_body()
    status, headers, got = await post(gateway.url, minted.secret, body)
    upstream = _norm(await direct(fake, body))
    assert status == 200
    assert headers["x-langwatch-cache-mode"] == "respect"
    cut = upstream.index(
        b'event: content_block_start\ndata: {"type":"content_block_start","index":'
        + (b"1" if text else b"0")
        + b',"content_block":{"type":"tool_use"'
    )
    frame_at = got.index(b"event: error\n")
    assert _norm(got[:frame_at]) == upstream[:cut]  # every event before the block, unchanged
    frame = error_frame(got)
    assert frame["error"]["type"] == frame["error"]["code"] == "tool_not_allowed"
    assert frame["error"]["message"] == (
        "Tool 'Bash' is blocked by this key's policy (policy_rules.tools.deny: ^Bash$)"
    )
    assert fake.messages_requests()[0].body == body  # the request went up unchanged

    # Claude Code's retry: same body without `stream` -> 403 at once, no second upstream call.
    upstream_calls = len(fake.messages_requests())
    status, headers, raw = await post(gateway.url, minted.secret, make_body(stream=False))
    assert status == 403
    assert orjson.loads(raw)["error"]["code"] == "tool_not_allowed"
    assert len(fake.messages_requests()) == upstream_calls
    rows = [r for r in await gateway.ledger_rows() if r["vk_id"] == minted.key.id]
    assert [(r["status"], r["error_code"]) for r in rows] == [
        (200, "tool_not_allowed"),
        (403, "tool_not_allowed"),
    ]
    assert rows[0]["policy_violation"] == "policy_rules.tools.deny: ^Bash$"
    assert rows[0]["output_tokens"] > 0

    # A different conversation is judged afresh (and Read is fine).
    fake.set_default(reply_calling("Read"))
    status, _, got = await post(gateway.url, minted.secret, make_body(text="read it"))
    assert status == 200 and b"event: error" not in got and b'"name":"Read"' in got


async def test_block_calls_non_streaming(gateway: Gateway, fake: FakeAnthropic) -> None:
    minted = await gateway.mint(config=policy(tools={"deny": ["^Bash$"]}))
    fake.set_default(reply_calling("Bash"))
    status, _, raw = await post(gateway.url, minted.secret, make_body(stream=False))
    assert status == 403
    error = orjson.loads(raw)["error"]
    assert error["code"] == "tool_not_allowed" and "Bash" in error["message"]
    row = (await gateway.ledger_rows())[-1]
    assert (row["status"], row["error_code"]) == (403, "tool_not_allowed")
    assert row["input_tokens"] == 25 and row["policy_violation"]
    fake.set_default(reply_calling("Read"))
    status, _, raw = await post(gateway.url, minted.secret, make_body(stream=False, text="x"))
    assert status == 200 and orjson.loads(raw)["content"][1]["name"] == "Read"


async def test_allowlist_blocks_everything_else(gateway: Gateway, fake: FakeAnthropic) -> None:
    minted = await gateway.mint(config=policy(tools={"allow": ["^Read$"]}))
    fake.set_default(reply_calling("Bash"))
    _, _, got = await post(gateway.url, minted.secret, make_body())
    assert error_frame(got)["error"]["message"] == (
        "Tool 'Bash' is blocked by this key's policy (policy_rules.tools.allow: ^Read$)"
    )


async def test_mcp_denied_by_server_prefix(gateway: Gateway, fake: FakeAnthropic) -> None:
    minted = await gateway.mint(config=policy(mcp={"deny": ["^github$"]}))
    fake.set_default(reply_calling("mcp__github__create_issue"))
    _, _, got = await post(gateway.url, minted.secret, make_body())
    frame = error_frame(got)
    assert frame["error"]["code"] == "tool_not_allowed"
    assert "policy_rules.mcp.deny: ^github$" in frame["error"]["message"]
    fake.set_default(reply_calling("mcp__slack__post"))
    _, _, got = await post(gateway.url, minted.secret, make_body(text="other"))
    assert b"event: error" not in got
    # mcp_servers[] in the body: the provider would call it, so it is refused up front.
    servers = [{"type": "url", "url": "https://mcp.github.example/sse", "name": "github"}]
    calls = len(fake.messages_requests())
    status, _, raw = await post(gateway.url, minted.secret, make_body(mcp_servers=servers))
    assert status == 403 and orjson.loads(raw)["error"]["code"] == "tool_not_allowed"
    assert len(fake.messages_requests()) == calls


async def test_strip_mode(gateway: Gateway, fake: FakeAnthropic) -> None:
    minted = await gateway.mint(config=policy(tools={"deny": ["^Bash$"], "mode": "strip"}))
    fake.set_default(reply_calling("Read"))
    body = make_body()
    status, _, _ = await post(gateway.url, minted.secret, body)
    assert status == 200
    sent = fake.messages_requests()[-1].body
    bash = json.dumps(TOOLS[0], separators=(",", ":")).encode() + b","
    assert sent == body.replace(bash, b"")  # only that tool's bytes are gone
    # The response guard stays on: a model that calls Bash anyway is still stopped.
    fake.set_default(reply_calling("Bash"))
    _, _, got = await post(gateway.url, minted.secret, make_body(text="again"))
    assert error_frame(got)["error"]["code"] == "tool_not_allowed"


async def test_reject_declared_mode(gateway: Gateway, fake: FakeAnthropic) -> None:
    minted = await gateway.mint(
        config=policy(tools={"deny": ["^Bash$"], "mode": "reject_declared"})
    )
    status, _, raw = await post(gateway.url, minted.secret, make_body())
    assert status == 403
    assert orjson.loads(raw)["error"]["code"] == "tool_not_allowed"
    assert fake.messages_requests() == []
    without_bash = make_body().replace(
        json.dumps(TOOLS[0], separators=(",", ":")).encode() + b",", b""
    )
    assert (await post(gateway.url, minted.secret, without_bash))[0] == 200


async def test_url_denied(gateway: Gateway, fake: FakeAnthropic) -> None:
    minted = await gateway.mint(config=policy(urls={"deny": [r"evil\.example"]}))
    status, _, raw = await post(
        gateway.url, minted.secret, make_body(text="summarise https://evil.example/page?q=1 please")
    )
    assert status == 403
    error = orjson.loads(raw)["error"]
    assert error["code"] == "url_not_allowed"
    assert "https://evil.example/page?q=1" in error["message"]
    assert "policy_rules.urls.deny" in error["message"]
    assert fake.messages_requests() == []
    ok = await post(gateway.url, minted.secret, make_body(text="see https://docs.example/x"))
    assert ok[0] == 200
    row = (await gateway.ledger_rows())[0]
    assert (row["status"], row["error_code"]) == (403, "url_not_allowed")


async def test_policy_change_applies_without_restart(
    gateway: Gateway, fake: FakeAnthropic, tmp_path: Path
) -> None:
    fake.set_default(reply_calling("Bash"))
    _, _, got = await post(gateway.url, gateway.key, make_body())
    assert b"event: error" not in got
    await gateway.admin.update(gateway.minted.key.id, config=policy(tools={"deny": ["Bash"]}))
    await gateway.server.app.services.keys.refresh(None)  # type: ignore[union-attr]
    _, _, got = await post(gateway.url, gateway.key, make_body(text="now"))
    assert error_frame(got)["error"]["code"] == "tool_not_allowed"


async def test_retry_is_caught_when_an_alias_was_spliced(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    minted = await gateway.mint(
        config=VirtualKeyConfig.parse(
            {
                "policy_rules": {"tools": {"deny": ["^Bash$"]}},
                "model_aliases": {"claude-opus-4-8": "claude-sonnet-5"},
            }
        )
    )
    fake.set_default(reply_calling("Bash", None))
    _, _, got = await post(gateway.url, minted.secret, make_body())
    assert error_frame(got)["error"]["code"] == "tool_not_allowed"
    assert fake.messages_requests()[-1].json()["model"] == "claude-sonnet-5"
    status, _, _ = await post(gateway.url, minted.secret, make_body(stream=False))
    assert status == 403
    assert len(fake.messages_requests()) == 1
