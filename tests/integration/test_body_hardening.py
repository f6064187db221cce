"""Issue #11: duplicate members, regex denial of service, deep nesting, long identifiers."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import update

from sluice.base.text import MAX_IDENTIFIER_CHARS
from sluice.config.vk import VirtualKeyConfig
from sluice.governance.key_admin import KeyAdmin
from sluice.store.keys_repo import KeysRepo
from sluice.store.tables import virtual_keys
from sluice.testing import FakeAnthropic
from sluice.testing.gateway import GatewayServer

from services import migrated_engine
from support import SECRET, Gateway, make_config

MSGS = '"messages":[{"role":"user","content":"hi"}]'


async def post(gw: Gateway, key: str, body: bytes, path: str = "/v1/messages") -> Any:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gw.url}{path}", data=body, headers={"x-api-key": key}) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


def policy(**rules: Any) -> VirtualKeyConfig:
    return VirtualKeyConfig.parse({"policy_rules": rules})


async def test_strip_mode_refuses_a_repeated_mcp_servers(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    minted = await gateway.mint(config=policy(mcp={"deny": ["^github$"]}, tools={"mode": "strip"}))
    server = '{"type":"url","name":"github","url":"https://mcp.example/gh"}'
    body = (
        '{"model":"claude-opus-4-8","max_tokens":16,'
        + MSGS
        + ',"mcp_servers":[],"mcp_servers":['
        + server
        + "]}"
    ).encode()
    status, _, raw = await post(gateway, minted.secret, body)
    assert status == 400, raw
    error = orjson.loads(raw)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "mcp_servers"
    assert fake.requests == []


async def test_strip_mode_refuses_a_repeated_tool_name(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    minted = await gateway.mint(config=policy(tools={"deny": ["^Bash$"], "mode": "strip"}))
    tool = '{"name":"Read","input_schema":{},"name":"Bash"}'
    body = '{"model":"claude-opus-4-8","max_tokens":16,' + MSGS + ',"tools":[' + tool + "]}"
    status, _, raw = await post(gateway, minted.secret, body.encode())
    assert status == 400, raw
    assert orjson.loads(raw)["error"]["param"] == "tools[0].name"
    assert fake.requests == []


async def test_url_policy_refuses_a_repeated_member_in_this_turn(
    gateway: Gateway, fake: FakeAnthropic
) -> None:
    minted = await gateway.mint(config=policy(urls={"deny": ["evil\\.example"]}))
    block = '{"type":"text","text":"https://evil.example/x","text":"fine"}'
    body = (
        '{"model":"claude-opus-4-8","max_tokens":16,"messages":[{"role":"user","content":['
        + block
        + "]}]}"
    )
    status, _, raw = await post(gateway, minted.secret, body.encode())
    assert status == 400, raw
    assert "text" in orjson.loads(raw)["error"]["param"]


async def test_catastrophic_pattern_does_not_block_the_loop(gateway: Gateway) -> None:
    minted = await gateway.mint(config=policy(models={"deny": ["(a+)+$"]}))
    body = ('{"model":"' + "a" * 26 + '!","max_tokens":16,' + MSGS + "}").encode()
    started = time.perf_counter()
    status, _, _ = await post(gateway, minted.secret, body)
    assert time.perf_counter() - started < 2.0
    assert status != 500


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("depth", [1_100, 5_000, 200_000])
async def test_deep_nesting_is_an_anthropic_400(gateway: Gateway, path: str, depth: int) -> None:
    nest = "[" * depth + "]" * depth
    body = ('{"model":"claude-opus-4-8","max_tokens":16,"messages":[' + nest + "]}").encode()
    status, _, raw = await post(gateway, gateway.key, body, path)
    assert status == 400, raw[:300]
    payload = orjson.loads(raw)
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"


async def test_a_1mb_model_gives_a_small_error_ledger_and_log(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    body = ('{"model":"' + "m" * 1_000_000 + '","max_tokens":16,' + MSGS + "}").encode()
    with caplog.at_level(logging.INFO):
        status, headers, raw = await post(gateway, gateway.key, body)
    assert status == 400
    assert len(raw) < 2_000
    assert orjson.loads(raw)["error"]["param"] == "model"
    row = await gateway.ledger_row(headers["request-id"])
    assert len(json.dumps(row, default=str)) < 4_000
    assert row["model_requested"] == "m" * MAX_IDENTIFIER_CHARS
    assert row["error_code"] == "invalid_request_error"
    assert all(len(r.getMessage()) + len(str(r.__dict__)) < 8_000 for r in caplog.records)


async def test_a_long_unknown_model_is_echoed_truncated(gateway: Gateway) -> None:
    body = ('{"model":"' + "z" * MAX_IDENTIFIER_CHARS + '","max_tokens":16,' + MSGS + "}").encode()
    status, _, raw = await post(gateway, gateway.key, body)
    assert status == 404  # an unknown model is Anthropic's 404 not_found_error
    assert len(raw) < 2_000


@pytest.mark.parametrize("where", ["model", "messages"])
async def test_invalid_utf8_is_a_400_with_a_policy_key(gateway: Gateway, where: str) -> None:
    # The peek skips strings without decoding them; the full parse a policy needs must not
    # turn bytes that are not UTF-8 (here a CESU-encoded surrogate) into a 500.
    minted = await gateway.mint(config=policy(tools={"deny": ["^Bash$"], "mode": "strip"}))
    bad = b"\xed\xa0\x80"
    model = b"claude-opus-4-8" + (bad if where == "model" else b"")
    text = b"hi" + (bad if where == "messages" else b"")
    body = (
        b'{"model":"'
        + model
        + b'","max_tokens":16,"messages":[{"role":"user","content":"'
        + text
        + b'"}],"tools":[]}'
    )
    status, _, raw = await post(gateway, minted.secret, body)
    assert status == 400, raw
    assert orjson.loads(raw)["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("depth", [300, 600, 900])
async def test_url_policy_reads_a_deep_message_without_a_500(gateway: Gateway, depth: int) -> None:
    minted = await gateway.mint(config=policy(urls={"deny": ["evil\\.example"]}))
    nest = "[" * depth + '"https://evil.example/x"' + "]" * depth
    body = (
        '{"model":"claude-opus-4-8","max_tokens":16,"messages":[{"role":"user","content":'
        + nest
        + "}]}"
    )
    status, _, raw = await post(gateway, minted.secret, body.encode())
    assert status in (400, 403), raw[:300]


async def test_a_stored_pattern_re2_cannot_compile_fails_closed(gateway: Gateway) -> None:
    # A key saved before patterns were RE2 may hold a lookahead: it still loads, and its
    # policy refuses (403 naming the rule) instead of failing the request with a 500.
    minted = await gateway.mint()
    legacy = '{"policy_rules": {"models": {"deny": ["^(?=claude-x)"]}}}'
    engine = gateway.server.app.services.engine
    assert engine is not None
    async with engine.begin() as conn:
        await conn.execute(
            update(virtual_keys).where(virtual_keys.c.id == minted.key.id).values(config=legacy)
        )
    body = ('{"model":"claude-opus-4-8","max_tokens":16,' + MSGS + "}").encode()
    status, _, raw = await post(gateway, minted.secret, body)
    assert status == 403, raw
    error = orjson.loads(raw)["error"]
    assert error["type"] == "model_not_allowed"
    assert "(?=claude-x)" in error["message"]
    status, _, raw = await post(gateway, gateway.key, body)  # other keys are served
    assert status == 200, raw


async def test_long_identifiers_reach_the_postgresql_ledger(
    fake: FakeAnthropic, tmp_path: Any
) -> None:
    # The ledger's model and session columns are 200 wide: a longer value once failed the
    # ledger's insert on PostgreSQL (SQLite does not check widths), losing the row.

    async with migrated_engine("postgresql", tmp_path / "unused.db") as engine:
        url = engine.url.render_as_string(hide_password=False).replace("+asyncpg", "")
        config = make_config(tmp_path / "unused.db", fake.url).model_copy(update={"database": url})
        server = GatewayServer(config)
        await server.start()
        try:
            state = server.app.services
            assert state.engine is not None and state.ledger is not None
            admin = KeyAdmin(KeysRepo(state.engine), SECRET.encode(), state.clock)
            minted = await admin.create(name="pg", principal="p")
            gw = Gateway(server, admin, minted, tmp_path / "unused.db")
            body = ('{"model":"' + "m" * 300 + '","max_tokens":16,' + MSGS + "}").encode()
            _, headers, _ = await post(gw, minted.secret, body)
            session = {"x-claude-code-session-id": "s" * 300, "x-api-key": minted.secret}
            ok = ('{"model":"claude-opus-4-8","max_tokens":16,' + MSGS + "}").encode()
            async with (
                aiohttp.ClientSession() as s,
                s.post(f"{gw.url}/v1/messages", data=ok, headers=session) as r,
            ):
                assert r.status == 200
                second = r.headers["request-id"]
            assert (await gw.ledger_row(headers["request-id"]))["model_requested"] is not None
            assert len((await gw.ledger_row(second))["session_id"]) == MAX_IDENTIFIER_CHARS
        finally:
            await server.stop()
