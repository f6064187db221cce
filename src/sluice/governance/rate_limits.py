"""Per-key rate limits: ``rpm``, ``tpm``, ``rpd`` and ``max_concurrent``.

Fixed windows aligned to the UTC minute and day. TPM counts estimated tokens at admission and
is corrected to the actual tokens at settle. A refusal is 429 ``rate_limited`` with
``retry-after`` (seconds to the window's end) and ``X-LangWatch-RateLimit-Dimension``.
Counting happens in a ``RateStore``: in-process, or in Redis to hold across replicas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sluice.base.clock import Clock
from sluice.config.vk import RateLimits
from sluice.errors import RateLimited, RateLimitUnavailable
from sluice.governance.outage import OUTAGE_ERRORS, Outage
from sluice.governance.windows import window_bounds

LEASE_TTL_MS = 15 * 60 * 1000  # a concurrency slot of a process that died frees itself


@dataclass(frozen=True, slots=True)
class Lease:
    key_id: str
    lease_id: str
    minute: int
    tokens: int
    concurrent: bool


class RateStore(Protocol):
    async def acquire(self, lease: Lease, day: int, limits: RateLimits, now_ms: int) -> str | None:
        """Count the request, or return the dimension that refuses it (counting nothing)."""
        ...

    async def release(self, lease: Lease, actual_tokens: int) -> None: ...


class MemoryRateStore:
    """Exact within one process."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._slots: dict[str, dict[str, int]] = {}  # key id -> lease id -> deadline
        self._last_sweep = 0

    async def acquire(self, lease: Lease, day: int, limits: RateLimits, now_ms: int) -> str | None:
        rpm = (lease.key_id, "rpm", lease.minute)
        tpm = (lease.key_id, "tpm", lease.minute)
        rpd = (lease.key_id, "rpd", day)
        slots = self._slots.setdefault(lease.key_id, {})
        for lid in [lid for lid, deadline in slots.items() if deadline <= now_ms]:
            del slots[lid]
        if limits.max_concurrent and len(slots) >= limits.max_concurrent:
            return "max_concurrent"
        if limits.rpm and self._counts.get(rpm, 0) >= limits.rpm:
            return "rpm"
        if limits.rpd and self._counts.get(rpd, 0) >= limits.rpd:
            return "rpd"
        if limits.tpm and self._counts.get(tpm, 0) + lease.tokens > limits.tpm:
            return "tpm"
        for counter, amount in ((rpm, 1), (rpd, 1), (tpm, lease.tokens)):
            self._counts[counter] = self._counts.get(counter, 0) + amount
        if lease.concurrent:
            slots[lease.lease_id] = now_ms + LEASE_TTL_MS
        self._sweep(now_ms, lease.minute, day)
        return None

    async def release(self, lease: Lease, actual_tokens: int) -> None:
        self.release_now(lease, actual_tokens)

    def release_now(self, lease: Lease, actual_tokens: int) -> None:
        counter = (lease.key_id, "tpm", lease.minute)
        if counter in self._counts:
            self._counts[counter] += actual_tokens - lease.tokens
        if lease.concurrent:
            self._slots.get(lease.key_id, {}).pop(lease.lease_id, None)

    def _sweep(self, now: int, minute: int, day: int) -> None:
        if now - self._last_sweep < 60_000:
            return
        self._last_sweep = now
        self._counts = {
            k: v for k, v in self._counts.items() if k[2] >= (day if k[1] == "rpd" else minute)
        }


def _refuse(dimension: str, limit: int, retry_after_s: int) -> RateLimited:
    return RateLimited(
        f"Rate limit reached for this key: {dimension} {limit}. Retry in {retry_after_s}s.",
        meta={"dimension": dimension, "limit": limit},
        headers={
            "retry-after": str(retry_after_s),
            "x-langwatch-ratelimit-dimension": dimension,
        },
    )


class RateLimiter:
    def __init__(
        self, clock: Clock, store: RateStore | None = None, outage: Outage | None = None
    ) -> None:
        self._clock = clock
        self._outage = outage or Outage()
        self.store: RateStore = store or MemoryRateStore()
        self._local = self.store if isinstance(self.store, MemoryRateStore) else None

    async def admit(
        self, key_id: str, limits: RateLimits, estimated_tokens: int, lease_id: str
    ) -> Lease | None:
        """``lease_id``: unique per request (the request id)."""
        if not (limits.rpm or limits.tpm or limits.rpd or limits.max_concurrent):
            return None
        now = self._clock.now_ms()
        minute, minute_end = window_bounds("minute", now)
        day, day_end = window_bounds("day", now)
        assert minute_end is not None and day_end is not None
        lease = Lease(key_id, lease_id, minute, estimated_tokens, bool(limits.max_concurrent))
        try:
            dimension = await self.store.acquire(lease, day, limits, now)
        except OUTAGE_ERRORS as exc:
            if self._outage.failed("rate_limits", exc) == "closed":
                raise RateLimitUnavailable(
                    "Rate limits cannot be counted right now (the shared counter store is "
                    "unreachable), and this gateway refuses rate-limited keys meanwhile.",
                    tips=["Check the redis: setting and that Redis is up; see /readyz."],
                ) from exc
            return None  # open: served uncounted
        if dimension is None:
            return lease
        to_minute = max(1, -(-(minute_end - now) // 1000))
        retry_after = {
            "max_concurrent": 1,
            "rpd": max(1, -(-(day_end - now) // 1000)),
        }.get(dimension, to_minute)
        limit = getattr(limits, dimension)
        raise _refuse(dimension, int(limit), retry_after)

    def release_now(self, lease: Lease, actual_tokens: int) -> bool:
        """Release at once when counting is in-process; False when it is remote (then
        ``release`` must run, off the response path)."""
        if self._local is None:
            return False
        self._local.release_now(lease, actual_tokens)
        return True

    async def release(self, lease: Lease, actual_tokens: int) -> None:
        try:
            await self.store.release(lease, actual_tokens)
        except OUTAGE_ERRORS as exc:
            # The concurrency slot frees itself after LEASE_TTL_MS; TPM is left uncorrected.
            self._outage.failed("rate_limits", exc)
