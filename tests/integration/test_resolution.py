"""Model resolution, aliases spliced in place, models_allowed, providers_allowed, /v1/models,
and cache mode."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

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


async def test_unknown_model_is_404_not_found_with_suggestions(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    # Anthropic answers an unknown model 404 not_found_error; Claude Code then asks the user to
    # pick another model instead of retrying without betas and tools.
    minted = await gateway.mint(config=cfg(model_aliases={"fast": "claude-haiku-4-5-20251001"}))
    for name in ("gpt-4o", "haiku"):
        status, _, raw = await post(gateway, minted.secret, with_model(BODY, name))
        assert status == 404
        error = orjson.loads(raw)["error"]
        assert error["type"] == "not_found_error"
        assert error["code"] == "model_not_recognized" and error["param"] == "model"
        assert f"'{name}'" in error["message"]
        for usable in ("fast", "claude-opus-4-8", "claude-haiku-4-5-20251001"):
            assert usable in error["message"]
    assert fake.messages_requests() == []


async def test_any_claude_name_goes_to_the_anthropic_provider_as_sent(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    # Undated aliases Anthropic accepts, and models newer than the provider's list: the
    # upstream judges them (a bare alias must never be a gateway error).
    minted = await gateway.mint()
    for name in ("claude-haiku-4-5", "claude-3-5-haiku-20241022", "claude-opus-5-5"):
        status, _, _ = await post(gateway, minted.secret, with_model(BODY, name))
        assert status == 200, name
    sent = [orjson.loads(r.body)["model"] for r in fake.messages_requests()]
    assert sent == ["claude-haiku-4-5", "claude-3-5-haiku-20241022", "claude-opus-5-5"]


async def test_model_rules_apply_before_claude_names_are_forwarded(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    minted = await gateway.mint(config=cfg(models_allowed=["claude-haiku-*"]))
    status, _, raw = await post(gateway, minted.secret, with_model(BODY, "claude-opus-5-5"))
    assert status == 403 and orjson.loads(raw)["error"]["code"] == "model_not_allowed"
    assert fake.messages_requests() == []


async def test_providers_allowed(two: Gateway, fake: FakeAnthropic, second: FakeAnthropic) -> None:
    only_backup = await two.mint(config=cfg(providers_allowed=["backup"]))
    assert (await post(two, only_backup.secret, with_model(BODY, "claude-sonnet-5")))[0] == 200
    assert fake.messages_requests() == [] and len(second.messages_requests()) == 1
    # A model only the disallowed provider declares goes, as a Claude name, to the allowed
    # Anthropic provider (which judges it); a non-Claude name only it declares is unknown.
    assert (await post(two, only_backup.secret, with_model(BODY, "claude-opus-4-8")))[0] == 200
    assert fake.messages_requests() == [] and len(second.messages_requests()) == 2
    only_primary = await two.mint(config=cfg(providers_allowed=["anthropic-primary"]))
    status, _, raw = await post(two, only_primary.secret, with_model(BODY, "gpt-like-local"))
    assert status == 404 and orjson.loads(raw)["error"]["code"] == "model_not_recognized"
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


class _HangingModels(FakeAnthropic):
    """An upstream whose ``GET /v1/models`` never answers in time."""

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "GET" and request.path.startswith("/v1/models"):
            await asyncio.sleep(30)
        return await super()._handle(request)


async def test_a_hanging_model_discovery_never_holds_requests(
    fake: FakeAnthropic, tmp_path: Path
) -> None:
    async with _HangingModels() as slow:
        gw = await start_gateway(
            tmp_path / "slow.db",
            fake.url,
            provider_yaml=(
                "  slow:\n    type: anthropic\n    api_key: sk-ant-slow\n"
                f"    base_url: '{slow.url}'\n    discovery_timeout_ms: 300\n"
            ),
        )
        try:
            minted = await gw.mint(config=cfg(providers_allowed=["slow"]))
            took: list[float] = []
            for name in ("claude-haiku-4-5", "claude-haiku-4-5", "local-model", "claude-sonnet-5"):
                started = time.perf_counter()
                status, _, _ = await post(gw, minted.secret, with_model(BODY, name))
                took.append(time.perf_counter() - started)
                assert status == (404 if name == "local-model" else 200), name
            # The first lookup is bounded by discovery_timeout_ms; its failure is remembered.
            assert took[0] < 2.0, took
            assert max(took[1:]) < 0.25, took
            assert len(slow.messages_requests()) == 3
        finally:
            await gw.server.stop()
