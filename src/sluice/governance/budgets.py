"""Budget admission and settlement.

Before dispatch, the request's worst-case cost (input estimated from the body size, plus
``max_tokens`` of output, at the model's price) is reserved against every budget that applies,
atomically. A block budget that would go over its limit refuses with 402 and nothing is
reserved, so spend never overshoots. After the response (or a failure or disconnect) the
reservation is released and the actual cost added, idempotently per request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from redis.exceptions import RedisError

from sluice.core.clock import Clock
from sluice.core.usage import Usage
from sluice.errors import BudgetExceeded, BudgetUnavailable
from sluice.governance.counters import Ask, BudgetCounters, CounterKey, MemoryCounters
from sluice.governance.webhooks import WebhookSender
from sluice.governance.windows import window_bounds
from sluice.pricing import Pricing
from sluice.store.budgets_repo import Budget, BudgetsRepo
from sluice.store.keys_repo import VirtualKey

log = logging.getLogger("sluice.budgets")

BYTES_PER_TOKEN = 3  # conservative: real JSON bodies run nearer 4 bytes a token
RESERVATION_TTL_MS = 15 * 60 * 1000  # longer than any stream; then reclaimed
WARN_AT = 0.8


def _target_of(key: VirtualKey, scope: str) -> str | None:
    return {
        "virtual_key": key.id,
        "principal": key.principal,
        "project": key.project,
        "team": key.team,
        "organization": key.organization,
    }[scope]


@dataclass
class Admitted:
    request_id: str
    budgets: list[tuple[Budget, CounterKey]]
    warnings: list[str]


class BudgetGate:
    def __init__(
        self,
        repo: BudgetsRepo,
        pricing: Pricing,
        clock: Clock,
        webhooks: WebhookSender,
        refresh_s: float = 2.0,
        counters: BudgetCounters | None = None,
        reservation_ttl_s: float = RESERVATION_TTL_MS / 1000,
    ) -> None:
        self._reservation_ttl_ms = int(reservation_ttl_s * 1000)
        self._repo = repo
        self._pricing = pricing
        self._clock = clock
        self._webhooks = webhooks
        self._refresh_s = refresh_s
        self.counters: BudgetCounters = counters or MemoryCounters()
        self._budgets: list[Budget] = []
        self._seed_locks: dict[CounterKey, asyncio.Lock] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._budgets = await self._repo.list_all()
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _poll(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._refresh_s)
            try:
                self._budgets = await self._repo.list_all()
                await self.counters.reclaim(self._clock.now_ms())
            except Exception:
                log.exception("budget refresh failed")

    def applicable(self, key: VirtualKey) -> list[Budget]:
        return [b for b in self._budgets if _target_of(key, b.scope) == b.target]

    def worst_case_micros(
        self, provider_kind: str, model: str, body_size: int, max_tokens: int | None
    ) -> int:
        estimate = Usage(
            input_tokens=body_size // BYTES_PER_TOKEN + 1,
            output_tokens=max_tokens if max_tokens is not None else 64_000,
        )
        return self._pricing.budget_micros(provider_kind, model, estimate)

    async def _counter(self, budget: Budget, now_ms: int) -> CounterKey:
        start, _ = window_bounds(budget.window, now_ms)
        counter = (budget.id, max(start, budget.reset_at))
        if not await self.counters.seeded(counter):
            lock = self._seed_locks.setdefault(counter, asyncio.Lock())
            async with lock:
                if not await self.counters.seeded(counter):
                    await self.counters.seed(counter, await self._repo.spent_micros(budget, start))
        return counter

    async def admit(self, request_id: str, key: VirtualKey, worst_micros: int) -> Admitted | None:
        budgets = self.applicable(key)
        if not budgets:
            return None
        try:
            return await self._admit(request_id, budgets, worst_micros)
        except (RedisError, OSError) as exc:
            # The shared counters are unreachable: fail closed for block budgets (we cannot
            # prove the request fits), open for warn-only ones.
            log.error("budget counters unavailable: %s", type(exc).__name__)
            if any(b.on_breach == "block" for b in budgets):
                raise BudgetUnavailable(
                    "Budgets cannot be checked right now (the shared counter store is "
                    "unreachable), so requests under a blocking budget are refused.",
                    tips=["Check the redis: setting and that Redis is up; see /readyz."],
                ) from exc
            return None

    async def _admit(self, request_id: str, budgets: list[Budget], worst_micros: int) -> Admitted:
        now = self._clock.now_ms()
        pairs = [(b, await self._counter(b, now)) for b in budgets]
        asks = [
            Ask(counter, worst_micros, b.limit_micros if b.on_breach == "block" else None)
            for b, counter in pairs
        ]
        refusal = await self.counters.reserve(request_id, asks, now + self._reservation_ttl_ms)
        if refusal is not None:
            budget = next(b for b, c in pairs if c == refusal.counter)
            raise _exceeded(budget, refusal.used, worst_micros)
        warnings = []
        for budget, counter in pairs:
            # What is already spent (settled), not what is reserved for requests in flight.
            pct = await self.counters.settled_amount(counter) / budget.limit_micros
            if pct >= WARN_AT:
                warnings.append(f"{budget.scope}:{int(pct * 100)}")
        return Admitted(request_id, pairs, warnings)

    async def settle(self, admitted: Admitted, actual_micros: int) -> None:
        try:
            await self.counters.settle(admitted.request_id, actual_micros, self._clock.now_ms())
            for budget, counter in admitted.budgets:
                if budget.webhook_url is None:
                    continue
                spent = await self.counters.settled_amount(counter)
                for kind, level in (("threshold_crossed", WARN_AT), ("breached", 1.0)):
                    marker = f"{budget.id}:{counter[1]}:{kind}"
                    if spent >= budget.limit_micros * level and await self.counters.claim_once(
                        marker
                    ):
                        self._webhooks.notify(budget, counter[1], kind, spent)
        except (RedisError, OSError):
            # The reservation expires and is reclaimed; the ledger row still has the cost.
            log.exception("budget settlement failed for %s", admitted.request_id)


def _exceeded(budget: Budget, used: int, worst: int) -> BudgetExceeded:
    limit = budget.limit_micros / 1e6
    spent = used / 1e6
    return BudgetExceeded(
        f"Budget '{budget.name or budget.id}' ({budget.scope} {budget.target}, {budget.window}) "
        f"would be exceeded: ${spent:.6f} of ${limit:.2f} used or reserved, and this request "
        f"may cost up to ${worst / 1e6:.6f}.",
        meta={
            "budget_id": budget.id,
            "scope": budget.scope,
            "target": budget.target,
            "window": budget.window,
            "limit_usd": limit,
            "spent_usd": spent,
            "request_worst_case_usd": worst / 1e6,
        },
        tips=[
            "The worst case assumes max_tokens of output; a smaller max_tokens may fit.",
            "An admin can raise or reset the budget with `sluice budgets update|reset`.",
        ],
    )
