"""In-process stores: exact within one process (the event loop runs each call to completion).

Each has synchronous twins (``sync`` is the store itself), so the gateway settles inline.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from sluice.backends.protocols import (
    EXPIRED_KEEP_MS,
    LEASE_TTL_MS,
    VERDICT_TTL_S,
    Ask,
    Clock,
    CounterKey,
    Granted,
    Lease,
    Refusal,
)
from sluice.config.vk import RateLimits
from sluice.errors import GatewayError

MAX_VERDICTS = 10_000


@dataclass
class _Reservation:
    deadline_ms: int
    asks: list[Ask]


@dataclass
class MemoryCounters:
    settled: dict[CounterKey, int] = field(default_factory=dict)
    reserved: dict[CounterKey, int] = field(default_factory=dict)
    _open: dict[str, _Reservation] = field(default_factory=dict)
    # Reclaimed, not yet settled: a late settle adds the cost (dropped after EXPIRED_KEEP_MS).
    _expired: dict[str, _Reservation] = field(default_factory=dict)
    _claimed: set[str] = field(default_factory=set)

    @property
    def sync(self) -> MemoryCounters:
        return self

    async def claim_once(self, marker: str) -> bool:
        return self.claim_now(marker)

    def claim_now(self, marker: str) -> bool:
        if marker in self._claimed:
            return False
        self._claimed.add(marker)
        return True

    async def seeded(self, counter: CounterKey) -> bool:
        return counter in self.settled

    async def seed(self, counter: CounterKey, spent: int) -> None:
        self.settled.setdefault(counter, spent)

    def used(self, counter: CounterKey) -> int:
        return self.settled.get(counter, 0) + self.reserved.get(counter, 0)

    async def settled_amount(self, counter: CounterKey) -> int:
        return self.settled.get(counter, 0)

    async def reserved_amount(self, counter: CounterKey) -> int:
        return self.reserved.get(counter, 0)

    async def reserve(
        self, request_id: str, asks: list[Ask], deadline_ms: int
    ) -> Refusal | Granted:
        return self.reserve_now(request_id, asks, deadline_ms)

    async def settle(self, request_id: str, actual: int, now_ms: int) -> list[int]:
        return self.settle_now(request_id, actual, now_ms)

    def reserve_now(self, request_id: str, asks: list[Ask], deadline_ms: int) -> Refusal | Granted:
        for ask in asks:
            used = self.used(ask.counter)
            if ask.limit is not None and used + ask.amount > ask.limit:
                return Refusal(ask.counter, used)
        for ask in asks:
            self.reserved[ask.counter] = self.reserved.get(ask.counter, 0) + ask.amount
        self._open[request_id] = _Reservation(deadline_ms, asks)
        return Granted(tuple(self.settled.get(ask.counter, 0) for ask in asks))

    def settle_now(self, request_id: str, actual: int, now_ms: int) -> list[int]:
        """Release the reservation and add the actual amount; after a reclaim, only add it.
        A repeat finds nothing: a no-op."""
        reservation = self._open.pop(request_id, None)
        if reservation is not None:
            for ask in reservation.asks:
                self.reserved[ask.counter] -= ask.amount
        else:
            reservation = self._expired.pop(request_id, None)
            if reservation is None:
                return []
        after = []
        for ask in reservation.asks:
            after.append(self.settled.get(ask.counter, 0) + actual)
            self.settled[ask.counter] = after[-1]
        return after

    async def extend(self, request_id: str, deadline_ms: int) -> None:
        self.extend_now(request_id, deadline_ms)

    def extend_now(self, request_id: str, deadline_ms: int) -> None:
        reservation = self._open.get(request_id)
        if reservation is not None:
            reservation.deadline_ms = deadline_ms

    async def reclaim(self, now_ms: int) -> int:
        """Release reservations past their deadline (their request stopped extending them)."""
        expired = [rid for rid, r in self._open.items() if r.deadline_ms <= now_ms]
        for rid in expired:
            reservation = self._expired[rid] = self._open.pop(rid)
            for ask in reservation.asks:
                self.reserved[ask.counter] -= ask.amount
        for rid in [
            r for r, v in self._expired.items() if v.deadline_ms < now_ms - EXPIRED_KEEP_MS
        ]:
            del self._expired[rid]
        return len(expired)


class MemoryRateStore:
    """Exact within one process."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._slots: dict[str, dict[str, int]] = {}  # key id -> lease id -> deadline
        self._last_sweep = 0

    @property
    def sync(self) -> MemoryRateStore:
        return self

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


class MemoryVerdicts:
    """In-process: a retry that reaches another replica goes upstream (and is judged again)."""

    def __init__(self, clock: Clock, ttl_s: float = VERDICT_TTL_S) -> None:
        self._clock = clock
        self._ttl_ms = int(ttl_s * 1000)
        self._entries: OrderedDict[tuple[str, bytes], tuple[int, GatewayError]] = OrderedDict()
        self._latest: dict[str, int] = {}  # key id -> when its newest verdict expires

    async def any_for(self, key_id: str) -> bool:
        return self._latest.get(key_id, 0) > self._clock.now_ms()

    async def put(self, key_id: str, fingerprint: bytes, verdict: GatewayError) -> None:
        expires = self._clock.now_ms() + self._ttl_ms
        self._entries[(key_id, fingerprint)] = (expires, verdict)
        self._latest[key_id] = expires
        self._entries.move_to_end((key_id, fingerprint))
        while len(self._entries) > MAX_VERDICTS:  # bounded memory
            self._entries.popitem(last=False)

    async def get(self, key_id: str, fingerprint: bytes) -> GatewayError | None:
        entry = self._entries.get((key_id, fingerprint))
        if entry is None:
            return None
        expires, verdict = entry
        if self._clock.now_ms() >= expires:
            del self._entries[(key_id, fingerprint)]
            return None
        # A fresh error each time: one exception instance must not be raised twice.
        return type(verdict)(verdict.message, meta=verdict.meta, tips=verdict.tips)
