"""One contract suite for the rate-limit store: in-process and Redis (a real server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sluice.backends.protocols import LEASE_TTL_MS, Lease, RateStore
from sluice.config.vk import RateLimits

from services import backend_of

REDIS_URL = "redis://127.0.0.1:6379/7"  # a database of its own, flushed per test
MINUTE = 1_780_000_020_000 // 60_000 * 60_000
DAY = MINUTE // 86_400_000 * 86_400_000
NOW = MINUTE + 1_000


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RateStore]:
    async with backend_of(request.param, REDIS_URL) as backend:
        yield backend.rates


def lease(n: int, tokens: int = 10, minute: int = MINUTE, concurrent: bool = False) -> Lease:
    return Lease("key-1", f"req-{n}", minute, tokens, concurrent)


async def test_rpm_refuses_past_the_limit_and_counts_nothing_then(store: RateStore) -> None:
    limits = RateLimits(rpm=3)
    for n in range(3):
        assert await store.acquire(lease(n), DAY, limits, NOW) is None
    assert await store.acquire(lease(3), DAY, limits, NOW) == "rpm"
    assert await store.acquire(lease(4), DAY, limits, NOW) == "rpm"
    # A new minute starts from zero.
    later = MINUTE + 60_000
    assert await store.acquire(lease(5, minute=later), DAY, limits, later + 1) is None


async def test_rpd_counts_the_whole_day(store: RateStore) -> None:
    limits = RateLimits(rpd=2)
    assert await store.acquire(lease(0), DAY, limits, NOW) is None
    later = MINUTE + 60_000
    assert await store.acquire(lease(1, minute=later), DAY, limits, later + 1) is None
    assert await store.acquire(lease(2, minute=later), DAY, limits, later + 2) == "rpd"


async def test_tpm_counts_the_estimate_and_release_corrects_it(store: RateStore) -> None:
    limits = RateLimits(tpm=100)
    first = lease(0, tokens=60)
    assert await store.acquire(first, DAY, limits, NOW) is None
    assert await store.acquire(lease(1, tokens=50), DAY, limits, NOW) == "tpm"
    await store.release(first, 20)  # it used 20, not the 60 estimated
    assert await store.acquire(lease(2, tokens=80), DAY, limits, NOW) is None
    assert await store.acquire(lease(3, tokens=1), DAY, limits, NOW) == "tpm"


async def test_a_refusal_counts_nothing(store: RateStore) -> None:
    limits = RateLimits(rpm=5, tpm=100)
    assert await store.acquire(lease(0, tokens=90), DAY, limits, NOW) is None
    for n in range(1, 10):
        assert await store.acquire(lease(n, tokens=20), DAY, limits, NOW) == "tpm"
    assert await store.acquire(lease(10, tokens=10), DAY, limits, NOW) is None


async def test_release_of_a_gone_window_creates_nothing(store: RateStore) -> None:
    """A release after its minute's counter is gone must not leave a negative count behind."""
    limits = RateLimits(tpm=100)
    await store.release(lease(0, tokens=500), 0)
    assert await store.acquire(lease(1, tokens=100), DAY, limits, NOW) is None
    assert await store.acquire(lease(2, tokens=1), DAY, limits, NOW) == "tpm"


async def test_max_concurrent_holds_slots_until_released(store: RateStore) -> None:
    limits = RateLimits(max_concurrent=2)
    first, second = lease(0, concurrent=True), lease(1, concurrent=True)
    assert await store.acquire(first, DAY, limits, NOW) is None
    assert await store.acquire(second, DAY, limits, NOW) is None
    assert await store.acquire(lease(2, concurrent=True), DAY, limits, NOW) == "max_concurrent"
    await store.release(first, 10)
    await store.release(first, 10)  # a repeat frees nothing more
    assert await store.acquire(lease(3, concurrent=True), DAY, limits, NOW) is None
    assert await store.acquire(lease(4, concurrent=True), DAY, limits, NOW) == "max_concurrent"


async def test_a_slot_of_a_dead_process_frees_itself(store: RateStore) -> None:
    limits = RateLimits(max_concurrent=1)
    assert await store.acquire(lease(0, concurrent=True), DAY, limits, NOW) is None
    refused = await store.acquire(lease(1, concurrent=True), DAY, limits, NOW + 1)
    assert refused == "max_concurrent"
    after = NOW + LEASE_TTL_MS
    assert await store.acquire(lease(2, concurrent=True), DAY, limits, after) is None


async def test_concurrency_is_checked_before_the_windows(store: RateStore) -> None:
    limits = RateLimits(rpm=1, max_concurrent=1)
    assert await store.acquire(lease(0, concurrent=True), DAY, limits, NOW) is None
    assert await store.acquire(lease(1, concurrent=True), DAY, limits, NOW) == "max_concurrent"


async def test_concurrent_acquires_never_pass_the_limit(store: RateStore) -> None:
    limits = RateLimits(rpm=100)
    results = await asyncio.gather(*[store.acquire(lease(n), DAY, limits, NOW) for n in range(300)])
    assert results.count(None) == 100 and results.count("rpm") == 200


async def test_keys_are_counted_apart(store: RateStore) -> None:
    limits = RateLimits(rpm=1)
    assert await store.acquire(lease(0), DAY, limits, NOW) is None
    other = Lease("key-2", "req-x", MINUTE, 10, False)
    assert await store.acquire(other, DAY, limits, NOW) is None
    assert await store.acquire(lease(1), DAY, limits, NOW) == "rpm"
