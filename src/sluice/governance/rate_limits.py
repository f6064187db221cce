"""Per-key rate limits: ``rpm``, ``tpm``, ``rpd`` and ``max_concurrent``.

Fixed windows aligned to the UTC minute and day. TPM counts estimated tokens at admission and
is corrected to the actual tokens at settle. A refusal is 429 ``rate_limited`` with
``retry-after`` (seconds to the window's end) and ``X-LangWatch-RateLimit-Dimension``.
In-process; the shared backend keeps the same contract across replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice.core.clock import Clock
from sluice.errors import RateLimited
from sluice.governance.windows import window_bounds
from sluice.store.keys_repo import VirtualKey


@dataclass
class Lease:
    key_id: str
    minute: int
    tokens: int
    concurrent: bool


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
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, str, int], int] = {}
        self._inflight: dict[str, int] = {}
        self._last_sweep = 0

    def admit(self, key: VirtualKey, estimated_tokens: int) -> Lease | None:
        limits = key.config.rate_limits
        if not (limits.rpm or limits.tpm or limits.rpd or limits.max_concurrent):
            return None
        now = self._clock.now_ms()
        minute, minute_end = window_bounds("minute", now)
        day, day_end = window_bounds("day", now)
        assert minute_end is not None and day_end is not None
        to_minute = max(1, -(-(minute_end - now) // 1000))
        to_day = max(1, -(-(day_end - now) // 1000))
        rpm_key, tpm_key, rpd_key = (
            (key.id, "rpm", minute),
            (key.id, "tpm", minute),
            (key.id, "rpd", day),
        )
        if limits.max_concurrent and self._inflight.get(key.id, 0) >= limits.max_concurrent:
            raise _refuse("max_concurrent", limits.max_concurrent, 1)
        if limits.rpm and self._counts.get(rpm_key, 0) >= limits.rpm:
            raise _refuse("rpm", limits.rpm, to_minute)
        if limits.rpd and self._counts.get(rpd_key, 0) >= limits.rpd:
            raise _refuse("rpd", limits.rpd, to_day)
        if limits.tpm and self._counts.get(tpm_key, 0) + estimated_tokens > limits.tpm:
            raise _refuse("tpm", limits.tpm, to_minute)
        for counter, amount in ((rpm_key, 1), (rpd_key, 1), (tpm_key, estimated_tokens)):
            self._counts[counter] = self._counts.get(counter, 0) + amount
        if limits.max_concurrent:
            self._inflight[key.id] = self._inflight.get(key.id, 0) + 1
        self._sweep(now, minute, day)
        return Lease(key.id, minute, estimated_tokens, bool(limits.max_concurrent))

    def release(self, lease: Lease, actual_tokens: int) -> None:
        counter = (lease.key_id, "tpm", lease.minute)
        if counter in self._counts:
            self._counts[counter] += actual_tokens - lease.tokens
        if lease.concurrent:
            self._inflight[lease.key_id] -= 1

    def _sweep(self, now: int, minute: int, day: int) -> None:
        if now - self._last_sweep < 60_000:
            return
        self._last_sweep = now
        self._counts = {
            k: v for k, v in self._counts.items() if k[2] >= (day if k[1] == "rpd" else minute)
        }
