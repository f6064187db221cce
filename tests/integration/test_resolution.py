"""Model resolution, aliases spliced in place, models_allowed, providers_allowed, /v1/models,
and cache mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sluice.config.vk import VirtualKeyConfig
from sluice.testing import FakeAnthropic

from support import Gateway, start_gateway

BODY = (
    b'{"model":"fast", "max_tokens":64,"stream":true,'
    b'"system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}],'
    b'"messages":[{"role":"user","content":[{"type":"text","text":"hi \\"model\\":\\"fast\\"",'
    b'"cache_control":{"type":"ephemeral","ttl":"1h"}}]},'
    b'{"role":"assistant","content":"ok"},'
    b'{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"x",'
    b'"cache_control":{"type":"ephemeral"}},{"type":"text","text":"more"}]}],'
    b'"tools":[{"name":"Bash","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}},'
    b'{"name":"Read","input_schema":{"type":"object"}}],'
    b'"metadata":{"user_id":"{\\"model\\":\\"fast\\"}"}}'
)


@pytest.fixture
async def second(tmp_path: Path) -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(models=["claude-sonnet-5", "gpt-like-local"]) as fake:
        yield fake


@pytest.fixture
async def two(fake: FakeAnthropic, second: FakeAnthropic, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start_gateway(
        tmp_path / "two.db",
        fake.url,
        provider_yaml=(
            "  backup:\n    type: anthropic\n    api_key: sk-ant-backup\n"
            f"    base_url: '{second.url}'\n"
        ),
    )
    try:
        yield gw
    finally:
        await gw.server.stop()


def with_model(body: bytes, model: str) -> bytes:
    return body.replace(b'{"model":"fast",', b'{"model":' + json.dumps(model).encode() + b",", 1)


async def post(gw: Gateway, key: str, body: bytes) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gw.url}/v1/messages", data=body, headers={"x-api-key": key}) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


def cfg(**doc: Any) -> VirtualKeyConfig:
    return VirtualKeyConfig.parse(doc)


async def test_alias_is_spliced_and_nothing_else_changes(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    minted = await gateway.mint(config=cfg(model_aliases={"fast": "claude-haiku-4-5-20251001"}))
    status, _, _ = await post(gateway, minted.secret, BODY)
    assert status == 200
    sent = fake.messages_requests()[-1].body
    assert sent == with_model(BODY, "claude-haiku-4-5-20251001")
    row = (await gateway.ledger_rows())[-1]
    assert (row["model_requested"], row["model_sent"]) == ("fast", "claude-haiku-4-5-20251001")


async def test_alias_to_provider_and_model(
    two: Gateway, fake: FakeAnthropic, second: FakeAnthropic
) -> None:
    minted = await two.mint(config=cfg(model_aliases={"fast": "backup/claude-sonnet-5"}))
    assert (await post(two, minted.secret, BODY))[0] == 200
    assert fake.messages_requests() == []
    assert second.messages_requests()[-1].body == with_model(BODY, "claude-sonnet-5")
    assert second.messages_requests()[-1].header("x-api-key") == "sk-ant-backup"
    row = (await two.ledger_rows())[-1]
    assert row["provider"] == "backup"


async def test_models_allowed_cannot_be_bypassed_by_alias(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    minted = await gateway.mint(
        config=cfg(models_allowed=["claude-haiku-*"], model_aliases={"fast": "claude-opus-4-8"})
    )
    status, _, raw = await post(gateway, minted.secret, BODY)
    assert status == 403
    error = orjson.loads(raw)["error"]
    assert error["code"] == "model_not_allowed"
    assert "claude-opus-4-8" in error["message"] and 'named "fast"' in error["message"]
    status, _, raw = await post(gateway, minted.secret, with_model(BODY, "claude-opus-4-8"))
    assert status == 403
    assert (await post(gateway, minted.secret, with_model(BODY, "claude-haiku-4-5-20251001")))[
        0
    ] == 200
    assert len(fake.messages_requests()) == 1


async def test_policy_models_deny(gateway: Gateway, fake: FakeAnthropic) -> None:
    minted = await gateway.mint(config=cfg(policy_rules={"models": {"deny": ["opus"]}}))
    status, _, raw = await post(gateway, minted.secret, with_model(BODY, "claude-opus-4-8"))
    assert status == 403
    assert "policy_rules.models.deny: opus" in orjson.loads(raw)["error"]["message"]
    assert fake.messages_requests() == []


async def test_unknown_model_is_400_with_suggestions(gateway: Gateway, fake: FakeAnthropic) -> None:
    minted = await gateway.mint(config=cfg(model_aliases={"fast": "claude-haiku-4-5-20251001"}))
    for name in ("claude-haiku-4-5", "gpt-4o"):
        status, _, raw = await post(gateway, minted.secret, with_model(BODY, name))
        assert status == 400
        error = orjson.loads(raw)["error"]
        assert error["code"] == "model_not_recognized" and error["param"] == "model"
        assert f"'{name}'" in error["message"]
        for usable in ("fast", "claude-opus-4-8", "claude-haiku-4-5-20251001"):
            assert usable in error["message"]
    # A dated Claude name is served even when not declared.
    assert (await post(gateway, minted.secret, with_model(BODY, "claude-3-5-haiku-20241022")))[
        0
    ] == 200
    assert len(fake.messages_requests()) == 1


async def test_providers_allowed(two: Gateway, fake: FakeAnthropic, second: FakeAnthropic) -> None:
    only_backup = await two.mint(config=cfg(providers_allowed=["backup"]))
    assert (await post(two, only_backup.secret, with_model(BODY, "claude-sonnet-5")))[0] == 200
    assert fake.messages_requests() == [] and len(second.messages_requests()) == 1
    # A model only the disallowed provider declares is not recognized for this key.
    status, _, raw = await post(two, only_backup.secret, with_model(BODY, "claude-opus-4-8"))
    assert status == 400 and orjson.loads(raw)["error"]["code"] == "model_not_recognized"
    status, _, raw = await post(
        two, only_backup.secret, with_model(BODY, "anthropic-primary/claude-opus-4-8")
    )
    assert status == 403 and "providers_allowed" in orjson.loads(raw)["error"]["message"]
    assert fake.messages_requests() == []


async def test_models_endpoint_lists_aliases_and_allowed(two: Gateway) -> None:
    minted = await two.mint(
        config=cfg(
            model_aliases={"fast": "claude-haiku-4-5-20251001", "big": "claude-opus-4-8"},
            policy_rules={"models": {"deny": ["opus"]}},
        )
    )
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{two.url}/v1/models",
            headers={"x-api-key": minted.secret, "anthropic-version": "2023-06-01"},
        ) as r,
    ):
        ids = [m["id"] for m in (await r.json())["data"]]
    assert ids == ["fast", "claude-sonnet-5", "claude-haiku-4-5-20251001", "gpt-like-local"]


async def test_cache_respect_keeps_bytes_and_disable_removes_only_markers(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    body = with_model(BODY, "claude-opus-4-8")
    status, headers, _ = await post(gateway, gateway.key, body)
    assert status == 200 and headers["x-langwatch-cache-mode"] == "respect"
    assert fake.messages_requests()[-1].body == body
    minted = await gateway.mint(config=cfg(cache={"mode": "disable"}))
    status, headers, _ = await post(gateway, minted.secret, body)
    assert headers["x-langwatch-cache-mode"] == "disable"
    sent = fake.messages_requests()[-1].body
    assert b"cache_control" not in sent
    expected = body
    for marker in (
        b',"cache_control":{"type":"ephemeral"}',
        b',"cache_control":{"type":"ephemeral","ttl":"1h"}',
    ):
        expected = expected.replace(marker, b"")
    assert sent == expected  # every marker gone, every other byte in place
