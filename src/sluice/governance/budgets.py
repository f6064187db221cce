"""Budget admission and settlement.

Before dispatch, the request's worst-case cost (input estimated from the body size, plus
``max_tokens`` of output, at the model's price) is reserved against every budget that applies,
atomically. A block budget that would go over its limit refuses with 402 and nothing is
reserved, so spend never overshoots. While the request runs, one timer per request pushes the
reservation's deadline on (the TTL only reclaims reservations of a process that died). After
the response (or a failure or disconnect) the reservation is released and the actual cost
added, idempotently per request id, and still once if the reservation was reclaimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from sluice.backends.protocols import Ask, BudgetCounters, CounterKey, Granted
from sluice.base.clock import Clock
from sluice.base.lazy_timers import LazyTimer, LazyTimers
from sluice.base.usage import Usage
from sluice.errors import BudgetExceeded, BudgetUnavailable
from sluice.governance.outage import OUTAGE_ERRORS, Outage
from sluice.governance.virtual_key import VirtualKey
from sluice.governance.webhooks import WebhookSender
from sluice.governance.windows import window_bounds
from sluice.pricing import Pricing
from sluice.store.budgets_repo import Budget, BudgetsRepo

log = logging.getLogger("sluice.budgets")

BYTES_PER_TOKEN = 3  # conservative: real JSON bodies run nearer 4 bytes a token
RESERVATION_TTL_MS = 15 * 60 * 1000  # longer than any stream; then reclaimed
WARN_AT = 0.8
MAX_UNSETTLED = 100_000  # settlements kept for a retry while the counters are unreachable


def _target_of(key: VirtualKey, scope: str) -> str | None:
    if scope == "virtual_key":
        return key.id
    value: str | None = getattr(key, scope)  # principal | project | team | organization
    return value


@dataclass
class Admitted:
    request_id: str
    budgets: list[tuple[Budget, CounterKey]]
    warnings: list[str]
    renewal: LazyTimer | None = None  # keeps the reservation while the request runs


class BudgetGate:
    def __init__(
        self,
        repo: BudgetsRepo,
        pricing: Pricing,
        clock: Clock,
        webhooks: WebhookSender,
        counters: BudgetCounters,
        refresh_s: float = 2.0,
        reservation_ttl_s: float = RESERVATION_TTL_MS / 1000,
        outage: Outage | None = None,
    ) -> None:
        self._outage = outage or Outage()
        # Settlements that failed (counters unreachable), retried by the poll: settling is
        # idempotent per request, so a retry never charges twice.
        self._unsettled: dict[str, tuple[Admitted, int]] = {}
        self._reservation_ttl_ms = int(reservation_ttl_s * 1000)
        self._repo = repo
        self._pricing = pricing
        self._clock = clock
        self._webhooks = webhooks
        self._refresh_s = refresh_s
        self.counters = counters
        # In-process counters settle synchronously (no task per request); see settle_now.
        self.local = counters.sync
        self._budgets: list[Budget] = []
        # Per key (by identity: a changed key is a new object): its budgets. Cleared with
        # every refresh of the budget list.
        self._applicable: dict[str, tuple[VirtualKey, list[Budget]]] = {}
        # Counters known seeded: skips one remote check per budget per request. Forgotten at
        # every refresh, so a Redis that lost its data is re-seeded within one poll.
        self._seeded: set[CounterKey] = set()
        self._windows: dict[str, tuple[int, int | None]] = {}
        self._seed_locks: dict[CounterKey, asyncio.Lock] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._renewals: set[asyncio.Task[None]] = set()
        self._renewal_timers = LazyTimers()  # no loop timer per request: it rarely fires
        # The poll and config sync refresh one at a time: an older list never lands last.
        self._refresh_lock = asyncio.Lock()

    def _set_budgets(self, budgets: list[Budget]) -> None:
        self._budgets = budgets
        self._applicable = {}
        self._seeded = set()

    async def refresh(self) -> None:
        """Reload the budget list now (the poll does this every ``refresh_s``)."""
        async with self._refresh_lock:
            self._set_budgets(await self._repo.list_all())

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        await asyncio.gather(*self._renewals, return_exceptions=True)

    async def _poll(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._refresh_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("budget refresh failed")
            try:
                await self.counters.reclaim(self._clock.now_ms())
                await self._retry_unsettled()
            except OUTAGE_ERRORS as exc:
                self._outage.failed("budgets", exc)

    async def _retry_unsettled(self) -> None:
        for request_id, (admitted, actual) in list(self._unsettled.items()):
            await self._settle_remote(admitted, actual)  # raises while still unreachable
            self._unsettled.pop(request_id, None)

    def applicable(self, key: VirtualKey) -> list[Budget]:
        cached = self._applicable.get(key.id)
        if cached is not None and cached[0] is key:
            return cached[1]
        found = [b for b in self._budgets if _target_of(key, b.scope) == b.target]
        self._applicable[key.id] = (key, found)
        return found

    def _window_start(self, window: str, now_ms: int) -> int:
        """The start of ``window`` at ``now_ms``, remembered until the window ends."""
        bounds = self._windows.get(window)
        if bounds is None or not (
            bounds[0] <= now_ms and (bounds[1] is None or now_ms < bounds[1])
        ):
            bounds = self._windows[window] = window_bounds(window, now_ms)
        return bounds[0]

    def worst_case_micros(
        self, provider_kind: str, model: str, body_size: int, max_tokens: int | None
    ) -> int:
        estimate = Usage(
            input_tokens=body_size // BYTES_PER_TOKEN + 1,
            output_tokens=max_tokens if max_tokens is not None else 64_000,
        )
        return self._pricing.budget_micros(provider_kind, model, estimate)

    def _counter_of(self, budget: Budget, now_ms: int) -> CounterKey:
        return budget.id, max(self._window_start(budget.window, now_ms), budget.reset_at)

    async def _counter(self, budget: Budget, now_ms: int) -> CounterKey:
        counter = self._counter_of(budget, now_ms)
        if counter in self._seeded:
            return counter
        start = self._window_start(budget.window, now_ms)
        if not await self.counters.seeded(counter):
            lock = self._seed_locks.setdefault(counter, asyncio.Lock())
            async with lock:
                if not await self.counters.seeded(counter):
                    await self.counters.seed(counter, await self._repo.spent_micros(budget, start))
        self._seeded.add(counter)
        return counter

    async def admit(self, request_id: str, key: VirtualKey, worst_micros: int) -> Admitted | None:
        budgets = self.applicable(key)
        if not budgets:
            return None
        try:
            return await self._admit(request_id, budgets, worst_micros)
        except OUTAGE_ERRORS as exc:
            # The shared counters are unreachable. Closed: refuse under a block budget (we
            # cannot prove the request fits); warn-only budgets never refuse. Open: serve it
            # uncounted (its cost is in the ledger, which re-seeds a Redis that lost its data).
            closed = self._outage.failed("budgets", exc) == "closed"
            if closed and any(b.on_breach == "block" for b in budgets):
                raise BudgetUnavailable(
                    "Budgets cannot be checked right now (the shared counter store is "
                    "unreachable), so requests under a blocking budget are refused.",
                    tips=["Check the redis: setting and that Redis is up; see /readyz."],
                ) from exc
            return None

    async def _admit(self, request_id: str, budgets: list[Budget], worst_micros: int) -> Admitted:
        now = self._clock.now_ms()
        pairs = []
        for budget in budgets:  # a counter known seeded costs no coroutine (most requests)
            counter = self._counter_of(budget, now)
            if counter not in self._seeded:
                counter = await self._counter(budget, now)
            pairs.append((budget, counter))
        asks = [
            Ask(counter, worst_micros, b.limit_micros if b.on_breach == "block" else None)
            for b, counter in pairs
        ]
        deadline = now + self._reservation_ttl_ms
        if self.local is not None:
            outcome = self.local.reserve_now(request_id, asks, deadline)
        else:
            outcome = await self.counters.reserve(request_id, asks, deadline)
        if not isinstance(outcome, Granted):
            budget = next(b for b, c in pairs if c == outcome.counter)
            raise _exceeded(budget, outcome.used, worst_micros)
        warnings = []
        # What is already spent (settled), not what is reserved for requests in flight.
        for (budget, _), spent in zip(pairs, outcome.settled, strict=True):
            pct = spent / budget.limit_micros
            if pct >= WARN_AT:
                warnings.append(f"{budget.scope}:{int(pct * 100)}")
        admitted = Admitted(request_id, pairs, warnings)
        self._schedule_renewal(admitted)
        return admitted

    def _schedule_renewal(self, admitted: Admitted) -> None:
        # One lazy timer per request (not per chunk): a third of the TTL, so a late tick or one
        # failed renewal still leaves the reservation in place.
        admitted.renewal = self._renewal_timers.call_later(
            self._reservation_ttl_ms / 3000, partial(self._renew, admitted)
        )

    def _renew(self, admitted: Admitted) -> None:
        """The request still runs: push its reservation's deadline one TTL on."""
        deadline = self._clock.now_ms() + self._reservation_ttl_ms
        if self.local is not None:
            self.local.extend_now(admitted.request_id, deadline)
        else:
            task = asyncio.get_running_loop().create_task(
                self._extend_remote(admitted.request_id, deadline)
            )
            self._renewals.add(task)
            task.add_done_callback(self._renewals.discard)
        self._schedule_renewal(admitted)

    async def _extend_remote(self, request_id: str, deadline: int) -> None:
        try:
            await self.counters.extend(request_id, deadline)
        except OUTAGE_ERRORS as exc:
            # The reservation may lapse; the settle still adds the cost (once) after a reclaim.
            self._outage.failed("budgets", exc)

    def settle_now(self, admitted: Admitted, actual_micros: int) -> bool:
        """Settle at once when the counters are in-process; False when they are remote (then
        ``settle`` must run, off the response path)."""
        if self.local is None:
            return False
        _stop_renewal(admitted)
        after = self.local.settle_now(admitted.request_id, actual_micros, self._clock.now_ms())
        for budget, counter, spent, kind, marker in _crossings(admitted, after):
            if self.local.claim_now(marker):
                self._webhooks.notify(budget, counter[1], kind, spent)
        return True

    async def settle(self, admitted: Admitted, actual_micros: int) -> None:
        _stop_renewal(admitted)
        try:
            await self._settle_remote(admitted, actual_micros)
        except OUTAGE_ERRORS as exc:
            # Kept and retried by the poll once the counters answer again.
            self._outage.failed("budgets", exc)
            if len(self._unsettled) < MAX_UNSETTLED:
                self._unsettled[admitted.request_id] = (admitted, actual_micros)
            else:
                log.error("budget settlement dropped for %s", admitted.request_id)

    async def _settle_remote(self, admitted: Admitted, actual_micros: int) -> None:
        now = self._clock.now_ms()
        after = await self.counters.settle(admitted.request_id, actual_micros, now)
        for budget, counter, spent, kind, marker in _crossings(admitted, after):
            if await self._claim(marker):
                self._webhooks.notify(budget, counter[1], kind, spent)

    async def _claim(self, marker: str) -> bool:
        """First claim of a webhook crossing. Unreachable: open sends (maybe twice across
        replicas), closed skips (maybe never sent)."""
        try:
            return await self.counters.claim_once(marker)
        except OUTAGE_ERRORS as exc:
            return self._outage.failed("webhook_dedupe", exc) == "open"


def _stop_renewal(admitted: Admitted) -> None:
    if admitted.renewal is not None:
        admitted.renewal.cancel()
        admitted.renewal = None


def _crossings(
    admitted: Admitted, settled_after: list[int]
) -> Iterator[tuple[Budget, CounterKey, int, str, str]]:
    """Webhook crossings reached by this settlement; each is sent once, by whoever claims its
    marker first."""
    for (budget, counter), spent in zip(admitted.budgets, settled_after, strict=False):
        if budget.webhook_url is None:
            continue
        for kind, level in (("threshold_crossed", WARN_AT), ("breached", 1.0)):
            if spent >= budget.limit_micros * level:
                yield budget, counter, spent, kind, f"{budget.id}:{counter[1]}:{kind}"


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
