"""One contract suite for the store on every backend: SQLite and PostgreSQL (real servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.base.clock import ManualClock
from sluice.base.settlement import Settlement
from sluice.config.vk import VirtualKeyConfig
from sluice.governance.key_admin import KeyAdmin
from sluice.governance.key_cache import KeyCache
from sluice.governance.virtual_key import key_from_row
from sluice.store.db import migrate
from sluice.store.keys_repo import KeysRepo
from sluice.store.ledger import LedgerWriter
from sluice.store.settings_repo import get_or_create_secret
from sluice.store.tables import ledger

from services import migrated_engine


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(request.param, tmp_path / "contract.db") as eng:
        await migrate(eng)  # idempotent: a second replica starting finds the schema at head
        yield eng


async def test_secret_is_created_once(engine: AsyncEngine) -> None:
    first, created = await get_or_create_secret(engine)
    again, created_again = await get_or_create_secret(engine)
    assert created and not created_again and first == again and len(first) == 64


async def test_keys_roundtrip_and_changes(engine: AsyncEngine) -> None:
    clock = ManualClock()
    repo = KeysRepo(engine)
    admin = KeyAdmin(repo, b"k", clock)
    minted = await admin.create(
        name="a",
        principal="p",
        config=VirtualKeyConfig(model_aliases={"fast": "claude-haiku-4-5-20251001"}),
    )
    loaded = await repo.get(minted.key.id)  # a plain row; governance parses its config
    assert loaded is not None and key_from_row(loaded) == minted.key
    assert [k.id for k in await repo.find(minted.key.display_prefix)] == [minted.key.id]
    clock.advance(10)
    since = clock.now_ms()
    assert await repo.changed_since(since) == []
    await admin.set_status(minted.key.id, "disabled")
    changed = await repo.changed_since(since)
    assert [(k.id, k.status) for k in changed] == [(minted.key.id, "disabled")]

    cache = KeyCache(repo, b"k", clock, refresh_s=1.0)
    with pytest.raises(Exception, match="disabled"):
        await cache.authenticate(minted.secret)
    await admin.set_status(minted.key.id, "active")
    await cache.refresh(since)
    assert (await cache.authenticate(minted.secret)).id == minted.key.id


async def test_ledger_group_commit_shares_transactions(engine: AsyncEngine) -> None:
    """Durable acknowledgement: 200 requests finishing together each wait for their row's
    commit, sharing a few transactions; one that is cancelled (its client left) neither
    loses its row nor cancels the others' wait."""
    writer = LedgerWriter(engine, flush_interval_ms=60_000)  # the timer never fires here
    writer.start()
    row = {
        "created_at": 1,
        "endpoint": "messages",
        "streaming": False,
        "status": 200,
        "duration_ms": 5,
        "client_disconnected": False,
        "input_tokens": 3,
        "output_tokens": 4,
    }
    try:
        waits = [
            asyncio.create_task(writer.commit(Settlement(**row, request_id=f"g{i}")))
            for i in range(200)
        ]
        await asyncio.sleep(0)
        waits[0].cancel()
        await asyncio.wait_for(asyncio.gather(*waits[1:]), 30)
        async with engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(ledger))).scalar_one()
        assert count == 200
        assert 1 <= writer.transactions <= 20, writer.transactions
    finally:
        await writer.stop()


async def test_ledger_batches_are_idempotent(engine: AsyncEngine) -> None:
    repo = KeysRepo(engine)
    minted = await KeyAdmin(repo, b"k", ManualClock()).create(name="a")
    writer = LedgerWriter(engine, batch_size=2, flush_interval_ms=10_000)
    row: dict[str, Any] = {
        "request_id": "req_1",
        "created_at": 1,
        "vk_id": minted.key.id,
        "endpoint": "messages",
        "streaming": True,
        "status": 200,
        "duration_ms": 5,
        "client_disconnected": False,
        "input_tokens": 3,
        "output_tokens": 4,
    }
    for rid in ("req_1", "req_2", "req_3"):
        writer.record(Settlement(**{**row, "request_id": rid}))
    writer.record(Settlement(**row))  # the same request id again: written once
    await writer.flush()
    async with engine.connect() as conn:
        ids = (await conn.execute(select(ledger.c.request_id).order_by(ledger.c.request_id))).all()
    assert [r[0] for r in ids] == ["req_1", "req_2", "req_3"]
    assert writer.pending == 0
    assert (await repo.get(minted.key.id)).last_used_at == 1  # type: ignore[union-attr]
