"""What the governance layer asks of a storage backend, and the types both sides share.

Three stores, each in memory (exact within one process) or in Redis (shared by replicas):
budget counters, rate-limit counters and remembered tool verdicts. A backend reports an
unreachable store as ``BackendUnavailable``, whatever its client raised; governance decides
what that means for the request (``redis_outage:``) and never sees a client library's types.

In-process stores also have synchronous twins (``sync``): the gateway calls them directly and
skips a task per request. A remote store's ``sync`` is None. It is read once, at construction.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from sluice.config.vk import RateLimits
from sluice.errors import GatewayError

CounterKey = tuple[str, int]  # (budget id, window start ms)
EXPIRED_KEEP_MS = 86_400_000  # how long a reclaimed reservation waits for its late settle
LEASE_TTL_MS = 15 * 60 * 1000  # a concurrency slot of a process that died frees itself
VERDICT_TTL_S = 120.0


class BackendUnavailable(Exception):
    """The shared store did not answer (down, slow or half-reachable). ``__cause__`` holds
    the client's own error."""


class Clock(Protocol):
    def now_ms(self) -> int: ...


class Ask(msgspec.Struct, frozen=True):  # built in C, per request
    counter: CounterKey
    amount: int
    limit: int | None  # None: counted, never refused (warn budgets)


class Granted(msgspec.Struct, frozen=True):  # built in C, per request
    settled: tuple[int, ...]  # each asked counter's settled amount (for warnings), in ask order


class Refusal(msgspec.Struct, frozen=True):  # built in C, per request
    counter: CounterKey
    used: int  # settled + reserved before this request


class Lease(msgspec.Struct, frozen=True):  # built in C, per request
    key_id: str
    lease_id: str
    minute: int
    tokens: int
    concurrent: bool


class SyncCounters(Protocol):
    """The synchronous twins of an in-process ``BudgetCounters``."""

    def reserve_now(
        self, request_id: str, asks: list[Ask], deadline_ms: int
    ) -> Refusal | Granted: ...

    def settle_now(self, request_id: str, actual: int, now_ms: int) -> list[int]: ...

    def extend_now(self, request_id: str, deadline_ms: int) -> None: ...

    def claim_now(self, marker: str) -> bool: ...


class BudgetCounters(Protocol):
    """Settled spend and in-flight reservations per budget window.

    ``reserve`` is all-or-nothing across every budget a request touches: when any blocking
    budget would go over its limit, nothing is reserved. ``settle`` is idempotent per request
    id. Reservations carry a deadline, so those of a request that never settles are
    reclaimed; a request that is still running extends its deadline, and one that settles
    after its reservation was reclaimed is still charged, exactly once.
    """

    @property
    def sync(self) -> SyncCounters | None: ...

    async def seed(self, counter: CounterKey, spent: int) -> None:
        """Set the settled amount if the counter has none yet (first sight of a window)."""
        ...

    async def seeded(self, counter: CounterKey) -> bool: ...

    async def settled_amount(self, counter: CounterKey) -> int: ...

    async def reserved_amount(self, counter: CounterKey) -> int:
        """What requests in flight hold against the counter (the admin API shows it)."""
        ...

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


class SyncRateStore(Protocol):
    def release_now(self, lease: Lease, actual_tokens: int) -> None: ...


class RateStore(Protocol):
    """Fixed-window request and token counts per key, and concurrency slots."""

    @property
    def sync(self) -> SyncRateStore | None: ...

    async def acquire(self, lease: Lease, day: int, limits: RateLimits, now_ms: int) -> str | None:
        """Count the request, or return the dimension that refuses it (counting nothing)."""
        ...

    async def release(self, lease: Lease, actual_tokens: int) -> None:
        """Correct the minute's tokens to the actual count; free the concurrency slot."""
        ...


class VerdictStore(Protocol):
    """Tool verdicts remembered per (key id, body fingerprint) for a while."""

    async def any_for(self, key_id: str) -> bool:
        """Whether this key has any live verdict: when not, nothing needs hashing at all."""
        ...

    async def put(self, key_id: str, fingerprint: bytes, verdict: GatewayError) -> None: ...

    async def get(self, key_id: str, fingerprint: bytes) -> GatewayError | None:
        """A fresh error each time (one exception instance must not be raised twice)."""
        ...
