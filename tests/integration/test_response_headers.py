"""Response headers Claude Code acts on: ``retry-after`` in integer seconds (an HTTP date or a
fraction converted, integers kept), ``x-should-retry`` untouched; and the probes it sends."""

from __future__ import annotations

import time
from email.utils import formatdate

import aiohttp
import pytest

from sluice.providers.headers import retry_after_seconds
from sluice.testing import FakeAnthropic, Fault, Scenario

from support import Gateway

BODY = (
    b'{"model":"claude-haiku-4-5-20251001","max_tokens":8,'
    b'"messages":[{"role":"user","content":"hi"}]}'
)


def test_retry_after_seconds() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds("7", now) == "7"
    assert retry_after_seconds(" 30 ", now) == "30"
    assert retry_after_seconds("1.2", now) == "2"
    assert retry_after_seconds(formatdate(now + 41.5, usegmt=True), now) == "41"
    assert retry_after_seconds(formatdate(now - 100, usegmt=True), now) == "0"
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("", now) is None


@pytest.mark.parametrize(
    ("sent", "low", "high"),
    [("7", 7, 7), ("2.5", 3, 3), ("DATE+20", 18, 20), ("DATE-60", 0, 0)],
)
async def test_retry_after_reaches_the_client_as_integer_seconds(
    sent: str, low: int, high: int, fake: FakeAnthropic, gateway: Gateway
) -> None:
    if sent.startswith("DATE"):
        sent = formatdate(time.time() + int(sent[4:]), usegmt=True)
    fake.script(Scenario(fault=Fault(status=429, retry_after=sent, should_retry="true")))
    headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gateway.url}/v1/messages", data=BODY, headers=headers) as r,
    ):
        assert r.status == 429
        assert low <= int(r.headers["retry-after"]) <= high
        assert r.headers["x-should-retry"] == "true"  # passed through unmodified


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", ["/", "/api/hello"])
async def test_claude_code_probes_are_answered(method: str, path: str, gateway: Gateway) -> None:
    # HEAD /api/hello is the CLI's warm-up with nonessential traffic on; GET /api/hello is what
    # `claude doctor` checks ("API (custom host)"). Neither carries a key.
    async with aiohttp.ClientSession() as s, s.request(method, gateway.url + path) as r:
        assert r.status == 200
        assert r.headers["request-id"].startswith("req_")
