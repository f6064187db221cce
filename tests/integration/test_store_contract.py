"""One contract suite for the store on every backend: SQLite and PostgreSQL (real servers)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
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
from sluice.store.db import create_engine, migrate
from sluice.store.keys_repo import KeysRepo
from sluice.store.ledger import LedgerWriter, _direct_writer
from sluice.store.ledger_postgres import PostgresLedgerWriter
from sluice.store.ledger_sqlite import SqliteLedgerWriter
from sluice.store.settings_repo import get_or_create_secret
from sluice.store.tables import ledger

from services import migrated_engine, silent_server


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


async def test_a_remembered_key_is_judged_again_once_it_changes(engine: AsyncEngine) -> None:
    """Authentication remembers a verified key (no HMAC on a repeat) only while the key is
    unchanged: after a rotation without grace, the old secret is refused even though it was
    verified a moment ago; a previous secret in its grace period is accepted, never
    remembered, and refused once the grace ends."""
    clock = ManualClock()
    repo = KeysRepo(engine)
    admin = KeyAdmin(repo, b"k", clock)
    minted = await admin.create(name="a")
    cache = KeyCache(repo, b"k", clock, refresh_s=1.0)
    first = await cache.identify(minted.secret)
    assert await cache.identify(minted.secret) is first  # the remembered object
    with pytest.raises(Exception, match="Invalid API key"):
        await cache.identify(minted.secret[:-1] + ("A" if minted.secret[-1] != "A" else "B"))

    rotated = await admin.rotate(minted.key.id, grace_s=0)
    await cache.reload()
    with pytest.raises(Exception, match="Invalid API key"):
        await cache.identify(minted.secret)
    assert (await cache.identify(rotated.secret)).id == minted.key.id

    again = await admin.rotate(minted.key.id, grace_s=60)
    await cache.reload()
    assert (await cache.identify(rotated.secret)).id == minted.key.id  # in its grace
    assert (await cache.identify(again.secret)).id == minted.key.id
    clock.advance(61)
    with pytest.raises(Exception, match="Invalid API key"):
        await cache.identify(rotated.secret)


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
    await writer.stop()  # closes the writer's own database connection


async def test_ledger_rows_keep_every_column(engine: AsyncEngine) -> None:
    """Every ledger column set (none left to its default) reads back as written: each
    backend's batch path binds every value with its column's type."""
    minted = await KeyAdmin(KeysRepo(engine), b"k", ManualClock()).create(name="a")
    full = Settlement(
        request_id="req_full",
        created_at=1_700_000_000_123,
        vk_id=minted.key.id,
        principal="ada",
        project="apollo",
        team="eng",
        organization="acme",
        session_id="sess-1",
        endpoint="messages",
        provider="bedrock-east",
        model_requested="claude-sonnet-4-5",
        model_sent="anthropic.claude-sonnet-4-5-v1:0",
        streaming=True,
        status=200,
        error_code="overloaded_error",
        stop_reason="end_turn",
        input_tokens=12,
        output_tokens=34,
        cache_read_tokens=5_000_000_000,  # past 32 bits: BIGINT
        cache_creation_tokens=7,
        cache_creation_5m_tokens=3,
        cache_creation_1h_tokens=4,
        upstream_request_id="msg_01",
        upstream_latency_ms=321,
        ttft_ms=123,
        duration_ms=456,
        client_disconnected=True,
        attempts=2,
        fallback_path="anthropic-primary:529 > bedrock-east:200",
        policy_violation="deny_tools:Bash",
        cost_micros=9_876,
        budget_micros=9_999,
        request_class="subagent",
        agent_id="agent-2",
        parent_agent_id="agent-1",
        ingress="bedrock",
    )
    writer = LedgerWriter(engine, flush_interval_ms=60_000)
    writer.record(full)
    await writer.flush()
    await writer.stop()
    async with engine.connect() as conn:
        stored = (await conn.execute(select(ledger))).mappings().one()
    assert dict(stored) == full.ledger_row()


async def test_each_database_gets_its_drivers_own_ledger_batch_path(tmp_path: Path) -> None:
    """A SQLite file is written through the stdlib driver and PostgreSQL through asyncpg (the
    speed-ups measured in BENCHMARKS.md); an in-memory SQLite goes through SQLAlchemy."""
    expected = {
        f"sqlite:///{tmp_path}/ledger.db": SqliteLedgerWriter,
        "postgresql://postgres@127.0.0.1:5432/test": PostgresLedgerWriter,
        "sqlite:///:memory:": type(None),
    }
    for url, kind in expected.items():
        engine = create_engine(url)
        try:
            assert type(_direct_writer(engine)) is kind, url
        finally:
            await engine.dispose()


async def test_ledger_on_an_unreachable_postgres_keeps_rows_and_frees_waiters() -> None:
    """Nothing listens: the flush fails, the row stays queued for the next one, and the
    request waiting for its commit is let go (never held by a failing database)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    engine = create_engine(f"postgresql://postgres@127.0.0.1:{port}/nowhere")
    writer = LedgerWriter(engine, flush_interval_ms=60_000)
    row = Settlement(request_id="r1", created_at=1, endpoint="messages")
    try:
        writer.start()
        await asyncio.wait_for(writer.commit(row), 10)
        assert writer.pending == 1 and writer.written == 0
    finally:
        with contextlib.suppress(OSError):
            await writer.stop()  # its last flush fails the same way; the row stays queued
        assert writer.pending == 1
        await engine.dispose()


async def test_a_postgres_that_never_answers_fails_the_batch_within_its_timeout() -> None:
    """A database that accepts the connection and then hangs: the batch fails after the
    timeout (so the flush's waiters go free), and the next batch connects afresh."""
    row = Settlement(request_id="r1", created_at=1, endpoint="messages")
    async with silent_server() as hung:
        engine = create_engine(f"postgresql://postgres@127.0.0.1:{hung.port}/hung")
        direct = PostgresLedgerWriter(engine, timeout_s=0.3)
        try:
            for attempt in (1, 2):
                started = asyncio.get_running_loop().time()
                with pytest.raises((TimeoutError, OSError)):
                    await direct.write([row], {})
                assert asyncio.get_running_loop().time() - started < 2.0
                assert len(hung.accepted) == attempt  # a fresh connection each time
        finally:
            await direct.close()
            await engine.dispose()
