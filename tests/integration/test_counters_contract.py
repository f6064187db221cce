"""One contract suite for the budget counters: in-process and Redis (a real server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sluice.backends.memory import MemoryCounters
from sluice.backends.protocols import Ask, BudgetCounters, Granted, Refusal

from services import backend_of

REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own, flushed per test
A = ("budget-a", 0)
B = ("budget-b", 0)


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[BudgetCounters]:
    async with backend_of(request.param, REDIS_URL) as backend:
        yield backend.counters


async def test_reserve_is_all_or_nothing(counters: BudgetCounters) -> None:
    await counters.seed(A, 900)
    await counters.seed(A, 0)  # seeding twice keeps the first value
    assert await counters.seeded(A) and not await counters.seeded(B)
    refusal = await counters.reserve("r1", [Ask(B, 200, 1000), Ask(A, 200, 1000)], 10_000)
    assert refusal == Refusal(A, 900)
    # Nothing was reserved on B either.
    assert await counters.reserve("r2", [Ask(B, 1000, 1000)], 10_000) == Granted((0,))
    assert isinstance(await counters.reserve("r3", [Ask(B, 1, 1000)], 10_000), Refusal)


async def test_settle_replaces_reservation_once(counters: BudgetCounters) -> None:
    await counters.seed(B, 40)
    granted = await counters.reserve("r1", [Ask(A, 500, 1000), Ask(B, 500, None)], 10_000)
    assert granted == Granted((0, 40))  # settled amounts, in ask order, before this request
    assert await counters.reserved_amount(A) == 500 and await counters.reserved_amount(B) == 500
    assert isinstance(await counters.reserve("r2", [Ask(A, 600, 1000)], 10_000), Refusal)
    assert await counters.settle("r1", 120, 0) == [120, 160]  # settled amounts after
    assert await counters.settle("r1", 120, 0) == []  # idempotent
    assert await counters.settled_amount(A) == 120 and await counters.settled_amount(B) == 160
    assert await counters.reserved_amount(A) == 0
    assert await counters.reserve("r2", [Ask(A, 880, 1000)], 10_000) == Granted((120,))
    assert isinstance(await counters.reserve("r3", [Ask(A, 1, 1000)], 10_000), Refusal)


async def test_expired_reservations_are_reclaimed(counters: BudgetCounters) -> None:
    assert isinstance(await counters.reserve("dead", [Ask(A, 1000, 1000)], 5_000), Granted)
    assert isinstance(await counters.reserve("live", [Ask(A, 1, 1000)], 5_000), Refusal)
    assert await counters.reclaim(4_999) == 0
    assert await counters.reclaim(5_000) == 1
    assert isinstance(await counters.reserve("live", [Ask(A, 1000, 1000)], 9_000), Granted)


async def test_a_settle_after_expiry_adds_the_cost_exactly_once(counters: BudgetCounters) -> None:
    """A request that outlived its reservation is still charged: once, not twice."""
    await counters.seed(A, 100)
    assert isinstance(
        await counters.reserve("long", [Ask(A, 500, 1000), Ask(B, 500, None)], 5_000), Granted
    )
    assert await counters.reclaim(5_000) == 1
    assert await counters.settle("long", 300, 6_000) == [400, 300]
    assert await counters.settle("long", 300, 6_000) == []  # idempotent after expiry too
    assert await counters.reclaim(10**9) == 0  # nothing reclaimed twice
    assert await counters.settled_amount(A) == 400 and await counters.settled_amount(B) == 300
    # The reservation was released once: 600 more fit, 601 do not.
    assert isinstance(await counters.reserve("x", [Ask(A, 601, 1000)], 10**9), Refusal)
    assert isinstance(await counters.reserve("y", [Ask(A, 600, 1000)], 10**9), Granted)


async def test_extend_keeps_a_reservation_past_its_first_deadline(
    counters: BudgetCounters,
) -> None:
    assert isinstance(await counters.reserve("stream", [Ask(A, 900, 1000)], 5_000), Granted)
    await counters.extend("stream", 20_000)
    await counters.extend("unknown", 20_000)  # a settled or unknown request: no-op
    assert await counters.reclaim(10_000) == 0
    assert isinstance(await counters.reserve("other", [Ask(A, 200, 1000)], 30_000), Refusal)
    assert await counters.settle("stream", 50, 11_000) == [50]
    assert await counters.reclaim(30_000) == 0


async def test_concurrent_reservations_never_pass_the_limit(counters: BudgetCounters) -> None:
    results = await asyncio.gather(
        *[counters.reserve(f"r{i}", [Ask(A, 10, 1000)], 10_000) for i in range(300)]
    )
    assert sum(isinstance(r, Granted) for r in results) == 100


async def test_claim_once(counters: BudgetCounters) -> None:
    assert await counters.claim_once("b:1:breached")
    assert not await counters.claim_once("b:1:breached")
    assert await counters.claim_once("b:2:breached")


async def test_memory_counters_keep_nothing_per_settled_request() -> None:
    """Settled requests leave no state behind (an id set kept for idempotency grew with every
    request and, past 50k, made each settle rebuild it: ~5 ms a request)."""
    counters = MemoryCounters()
    for i in range(1000):
        assert isinstance(await counters.reserve(f"r{i}", [Ask(A, 1, None)], 10_000), Granted)
        assert await counters.settle(f"r{i}", 1, 0) == [i + 1]
    assert counters.__dict__.keys() == {"settled", "reserved", "_open", "_expired", "_claimed"}
    assert counters._open == {} == counters._expired
    assert counters.reserved == {A: 0} and counters.settled == {A: 1000}
