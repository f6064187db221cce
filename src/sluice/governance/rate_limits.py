"""Per-key rate limits: ``rpm``, ``tpm``, ``rpd`` and ``max_concurrent``.

Fixed windows aligned to the UTC minute and day. TPM counts estimated tokens at admission and
is corrected to the actual tokens at settle. A refusal is 429 ``rate_limited`` with
``retry-after`` (seconds to the window's end) and ``X-LangWatch-RateLimit-Dimension``.
Counting happens in a ``RateStore`` (``sluice.backends``): in-process, or in Redis to hold
across replicas.
"""

from __future__ import annotations

from sluice.backends.protocols import Lease, RateStore
from sluice.base.clock import Clock
from sluice.config.vk import RateLimits
from sluice.errors import RateLimited, RateLimitUnavailable
from sluice.governance.outage import OUTAGE_ERRORS, Outage
from sluice.governance.windows import window_bounds

__all__ = ["Lease", "RateLimiter"]  # Lease: re-exported for the handler, which holds one


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
    def __init__(self, clock: Clock, store: RateStore, outage: Outage | None = None) -> None:
        self._clock = clock
        self._outage = outage or Outage()
        self.store = store
        self._local = store.sync  # in-process: released inline (see release_now)

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
