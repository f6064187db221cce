"""Counters for budgets: settled spend and in-flight reservations per budget window.

``reserve`` is all-or-nothing across every budget a request touches: when any blocking budget
would go over its limit, nothing is reserved. ``settle`` is idempotent per request id.
Reservations carry a deadline, so those of a request that never settles are reclaimed; a
request that is still running extends its deadline, and one that settles after its
reservation was reclaimed is still charged, exactly once.

``MemoryCounters`` is exact within one process (the event loop runs each call to
completion); ``sluice.store.redis_counters.RedisCounters`` keeps the same contract across
replicas with atomic Lua scripts. One contract suite runs against both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

CounterKey = tuple[str, int]  # (budget id, window start ms)
EXPIRED_KEEP_MS = 86_400_000  # how long a reclaimed reservation waits for its late settle


@dataclass(frozen=True, slots=True)
class Ask:
    counter: CounterKey
    amount: int
    limit: int | None  # None: counted, never refused (warn budgets)


@dataclass(frozen=True, slots=True)
class Granted:
    settled: tuple[int, ...]  # each asked counter's settled amount (for warnings), in ask order


@dataclass(frozen=True, slots=True)
class Refusal:
    counter: CounterKey
    used: int  # settled + reserved before this request


class BudgetCounters(Protocol):
    async def seed(self, counter: CounterKey, spent: int) -> None:
        """Set the settled amount if the counter has none yet (first sight of a window)."""
        ...

    async def seeded(self, counter: CounterKey) -> bool: ...

    async def settled_amount(self, counter: CounterKey) -> int: ...

    async def reserve(
        self, request_id: str, asks: list[Ask], deadline_ms: int
    ) -> Refusal | Granted:
        """All or nothing; a Refusal names the first limit that would be passed."""
        ...

    async def settle(self, request_id: str, actual: int, now_ms: int) -> list[int]:
        """Release the reservation, add ``actual``; idempotent per request id. Returns the
        settled amounts after, in ask order ([] for a repeat or an unknown request), so
        webhook checks need no second round trip."""
        ...

    async def extend(self, request_id: str, deadline_ms: int) -> None:
        """Move an open reservation's deadline (the request is still running); else no-op."""
        ...

    async def reclaim(self, now_ms: int) -> int:
        """Release reservations past their deadline; a later settle still adds its cost."""
        ...

    async def claim_once(self, marker: str) -> bool:
        """True for the first caller only (webhooks go out once per crossing per window)."""
        ...

    async def close(self) -> None: ...


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

    async def close(self) -> None:
        return None

    async def reserve(
        self, request_id: str, asks: list[Ask], deadline_ms: int
    ) -> Refusal | Granted:
        return self.reserve_now(request_id, asks, deadline_ms)

    async def settle(self, request_id: str, actual: int, now_ms: int) -> list[int]:
        return self.settle_now(request_id, actual, now_ms)

    # Synchronous twins: in-process counters need no await, so the gateway calls these
    # directly and skips a task per request.
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
