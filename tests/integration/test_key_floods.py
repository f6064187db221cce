"""Floods of bad keys (issue #11, item 11) and the key cache on the hot path (item 12).

Database reads are counted with a SQLAlchemy event listener on the gateway's real engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.base.clock import ManualClock
from sluice.governance import vk_format
from sluice.governance.key_cache import KeyCache
from sluice.store.db import create_engine, migrate
from sluice.store.keys_repo import KeysRepo
from sluice.testing import FakeAnthropic

from support import Gateway, scrape, start_gateway, value

BODY = b'{"model":"claude-opus-4-8","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'


def made_up_key(n: int) -> str:
    """Well-formed (a valid ULID id and a secret), but on file nowhere."""
    return f"lw_vk_live_{vk_format.new_key_id()[:20]}{n:06d}" + "s" * 32


class Statements:
    """Reads (SELECTs) the engine runs that mention ``table``, while counting; writes (the
    ledger's last_used_at) are not reads."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.seen: list[str] = []

    def by_id(self) -> int:
        """Single-key reads (``KeysRepo.get``), not the refresh poll's range reads."""
        return sum(1 for s in self.seen if f"{self.table}.id = " in s)

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and self.table in statement:
            self.seen.append(statement)


@contextmanager
def counting(engine: AsyncEngine, table: str = "virtual_keys") -> Iterator[Statements]:
    counter = Statements(table)
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", counter)


async def post_all(url: str, keys: list[str | None], concurrency: int = 64) -> list[int]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def one(key: str | None) -> int:
            headers = {"x-api-key": key} if key is not None else {}
            async with s.post(f"{url}/v1/messages", data=BODY, headers=headers) as r:
                await r.read()
                return r.status

        return await asyncio.gather(*(one(k) for k in keys))


@pytest.fixture
async def clocked(fake: FakeAnthropic, tmp_path: Path) -> Gateway:
    # A slow poll: its full resync (every 30 polls) would clear the negative cache mid-test.
    gw = await start_gateway(tmp_path / "sluice.db", fake.url, clock=ManualClock(), refresh_s=5.0)
    yield gw  # type: ignore[misc]
    await gw.server.stop()


async def test_unauthenticated_flood_stores_nothing_and_logs_sampled(
    gateway: Gateway, fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice.access")
    wrong_secret = gateway.key[:-6] + "AAAAAA"  # the known id, the wrong secret
    flood: list[str | None] = (
        [None] * 60 + ["not-a-key"] * 60 + [made_up_key(n) for n in range(60)] + [wrong_secret] * 60
    )
    assert set(await post_all(gateway.url, flood)) == {401}
    assert await gateway.ledger_rows() == []  # no row per 401
    m = await scrape(gateway)
    for reason in ("missing", "malformed", "unknown", "mismatch"):
        assert value(m, "sluice_auth_failures_total", reason=reason) == 60
    assert value(m, "sluice_requests_total", route="messages", status="401", provider="",
                 model="", ingress="anthropic") == 240  # fmt: skip
    lines = [r for r in caplog.records if r.name == "sluice.access"]
    assert 1 <= len(lines) < 240  # sampled: 10 a second by default
    # Each line let through says how many were held back before it: none goes unaccounted.
    await asyncio.sleep(1.05)
    assert await post_all(gateway.url, [None]) == [401]
    lines = [r for r in caplog.records if r.name == "sluice.access"]
    assert sum(r.suppressed for r in lines) == 241 - len(lines)  # type: ignore[attr-defined]
    # A known key's refusal is still charged to it; an identified request still has its row.
    assert await post_all(gateway.url, [gateway.key]) == [200]
    rows = await gateway.ledger_rows()
    assert [(r["status"], r["vk_id"]) for r in rows] == [(200, gateway.minted.key.id)]
    assert fake.messages_requests() != []


async def test_unknown_key_ids_cost_one_read_per_id_per_ttl(clocked: Gateway) -> None:
    state = clocked.server.app.services
    assert state.engine is not None and state.keys is not None
    clock = state.clock
    assert isinstance(clock, ManualClock)
    ids = [made_up_key(n) for n in range(5)]
    with counting(state.engine) as sql:
        # 60 concurrent requests per id: they arrive before the first read has answered.
        assert set(await post_all(clocked.url, ids * 60, concurrency=100)) == {401}
        assert sql.by_id() == 5
        clock.advance(2.5)  # past the negative TTL: each id is read once more
        assert set(await post_all(clocked.url, ids * 20, concurrency=100)) == {401}
        assert sql.by_id() == 10
    assert state.keys.unknown_count == 5


async def test_negative_cache_is_bounded_and_can_be_cleared(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        await migrate(engine)
        cache = KeyCache(KeysRepo(engine), b"secret", ManualClock(), 1.0, unknown_max=100)
        keys = [made_up_key(n) for n in range(150)]
        with counting(engine) as sql:
            for key in keys:
                with pytest.raises(Exception, match="not known"):
                    await cache.identify(key)
            assert (cache.unknown_count, sql.by_id()) == (100, 150)
            for key in keys[50:]:  # the 100 seen last are remembered
                with pytest.raises(Exception, match="not known"):
                    await cache.identify(key)
            assert sql.by_id() == 150
            with pytest.raises(Exception, match="not known"):  # the oldest were dropped
                await cache.identify(keys[0])
            assert sql.by_id() == 151
            cache.forget_unknown()
            assert cache.unknown_count == 0
            with pytest.raises(Exception, match="not known"):
                await cache.identify(keys[-1])
            assert sql.by_id() == 152
    finally:
        await engine.dispose()


async def test_requests_with_a_valid_key_never_read_the_key_table(
    fake: FakeAnthropic, tmp_path: Path
) -> None:
    """The key cache on the hot path: after a key's first use, no request reads its row (the
    refresh poll, every 5 s here, is the only reader)."""
    gw = await start_gateway(tmp_path / "sluice.db", fake.url, refresh_s=5.0)
    try:
        state = gw.server.app.services
        assert state.engine is not None
        assert await post_all(gw.url, [gw.key]) == [200]
        with counting(state.engine) as sql:
            assert set(await post_all(gw.url, [gw.key] * 200, concurrency=20)) == {200}
        assert sql.by_id() == 0
        assert len(sql.seen) <= 2, sql.seen  # at most the poll, whatever it reads
    finally:
        await gw.server.stop()
