"""Replay every captured Claude Code request through the gateway (tests/fixtures/claude-code)."""

from __future__ import annotations

import hashlib
import re

import aiohttp
import orjson
import pytest

from sluice.testing import FakeAnthropic, Reply, Scenario, scenario_by_name

from support import PROVIDER_KEY, Gateway, fixture_path, fixture_request, lane_fixtures

_HOP = {"host", "content-length", "connection", "accept-encoding"}
_FORWARDED_AS_SENT = re.compile(
    r"^(anthropic-version|anthropic-beta|content-type|user-agent|x-app|x-claude-code-session-id|"
    r"x-stainless-.*|anthropic-dangerous-direct-browser-access|accept)$"
)


def _with_vk(headers: list[tuple[str, str]], vk: str) -> list[tuple[str, str]]:
    """The captured headers, with the captured credentials replaced by our virtual key."""
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower in _HOP:
            continue
        if lower == "authorization":
            value = f"Bearer {vk}"
        elif lower == "x-api-key":
            value = vk
        out.append((name, value))
    return out


def _normalise(data: bytes) -> bytes:
    return re.sub(rb"(toolu|msg)_fake_\d+", rb"\1_fake_N", data)


@pytest.mark.parametrize("name", lane_fixtures())
async def test_replay_fixture(name: str, gateway: Gateway, fake: FakeAnthropic) -> None:
    """Every captured request, of the pinned CLI and of the newest one captured
    (``scripts/capture_fixtures.py``), relayed byte for byte."""
    headers, body = fixture_request(name)
    captured = orjson.loads(fixture_path(name).read_bytes())
    method, path = captured["method"], captured["path"]
    sent_headers = _with_vk(headers, gateway.key)
    scenario = scenario_by_name("tool_bash" if "turn1" in name else "cache")
    fake.set_default(Scenario(Reply(scenario.reply.blocks, usage=scenario.reply.usage)))
    async with (
        aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Accept")) as s,
        s.request(method, gateway.url + path, data=body or None, headers=sent_headers) as r,
    ):
        got = await r.read()
        status = r.status
    assert status == 200
    if method == "HEAD":
        assert fake.messages_requests() == []
        return
    upstream = fake.messages_requests()[-1]
    # Body bytes unchanged; headers forwarded as sent; the key swapped for the provider's.
    assert upstream.body == body
    assert upstream.query == "beta=true"
    for hname, value in sent_headers:
        if _FORWARDED_AS_SENT.match(hname.lower()):
            assert upstream.header(hname) == value, hname
    assert upstream.header("x-api-key") == PROVIDER_KEY
    assert upstream.header("authorization") is None
    assert all(gateway.key not in v for _, v in upstream.headers)
    # The client got the fake's bytes exactly: replay directly and compare digests.
    async with aiohttp.ClientSession() as s, s.post(f"{fake.url}/v1/messages", data=body) as r:
        direct = await r.read()
    assert (
        hashlib.sha256(_normalise(got)).hexdigest()
        == hashlib.sha256(_normalise(direct)).hexdigest()
    )
    is_stream = orjson.loads(body).get("stream") is True
    assert got.startswith(b"event: message_start") if is_stream else got.startswith(b"{")
    rows = await gateway.ledger_rows()
    assert rows[-1]["streaming"] is is_stream
    assert rows[-1]["session_id"] == upstream.header("x-claude-code-session-id")
    assert rows[-1]["cache_read_tokens"] == (0 if "turn1" in name else 2048)
