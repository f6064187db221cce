"""Rate limits and budgets: the two steps that hold counters for the request's lifetime.

Both count billable calls only (``/v1/messages``, not count_tokens). Each takes its hold in
``admit`` (a lease, a reservation) and gives it back in ``settle`` with the real usage: at
once when the counters are in-process, off the response path when they are remote (Redis).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from sluice.base.settlement import Settlement
from sluice.core.context import RequestContext
from sluice.governance.budgets import BYTES_PER_TOKEN, BudgetGate
from sluice.governance.rate_limits import RateLimiter

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class RateLimit:
    def __init__(self, limiter: RateLimiter, spawn: Spawn) -> None:
        self.limiter = limiter
        self.spawn = spawn

    async def admit(self, ctx: RequestContext) -> None:
        if ctx.endpoint != "messages":
            return
        assert ctx.key is not None
        estimate = len(ctx.body) // BYTES_PER_TOKEN + (ctx.max_tokens or 0)
        ctx.lease = await self.limiter.admit(
            ctx.key.id, ctx.key.config.rate_limits, estimate, ctx.request_id
        )

    def settle(self, ctx: RequestContext, settlement: Settlement) -> None:
        lease, ctx.lease = ctx.lease, None
        if lease is None:
            return
        actual = settlement.total_tokens
        if not self.limiter.release_now(lease, actual):
            self.spawn(self.limiter.release(lease, actual))


class Budget:
    def __init__(self, gate: BudgetGate, spawn: Spawn) -> None:
        self.gate = gate
        self.spawn = spawn

    async def admit(self, ctx: RequestContext) -> None:
        key = ctx.key
        if ctx.endpoint != "messages" or key is None or not self.gate.applicable(key):
            return
        worst = self.gate.worst_case_micros(
            ctx.provider_kind or "", ctx.model_sent or "", len(ctx.body), ctx.max_tokens
        )
        ctx.reservation = admitted = await self.gate.admit(ctx.request_id, key, worst)
        if admitted is not None and admitted.warnings:
            warning = ",".join(admitted.warnings).encode()
            ctx.response_headers.append((b"x-langwatch-budget-warning", warning))

    def settle(self, ctx: RequestContext, settlement: Settlement) -> None:
        admitted, ctx.reservation = ctx.reservation, None
        if admitted is None:
            return
        micros = settlement.budget_micros
        if not self.gate.settle_now(admitted, micros):
            self.spawn(self.gate.settle(admitted, micros))
