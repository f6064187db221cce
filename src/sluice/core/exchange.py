"""One request's life after the handler built its context: run the steps, respond (relay
the upstream, or refuse in the client's error shape), then settle exactly once.

Settling builds the request's row, records it in the ledger (or commits it, for a durable
acknowledgement, just before the response's last byte), gives every step back what it holds
(in reverse order), and hands the row to the observers (traces, metrics, the access log).
A request never tied to a key (mostly 401s: a flood of them must not grow the database) gets
no ledger row: only the observers' ``unattributed`` hook.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Protocol

from sluice.base.asgi import Send, send_error, send_json
from sluice.base.clock import RequestIds
from sluice.base.settlement import Settlement
from sluice.core.context import RequestContext
from sluice.core.relay import relay_error_safe
from sluice.core.settle import settle_request
from sluice.core.steps.base import Steps
from sluice.errors import GatewayError
from sluice.governance.budgets import BYTES_PER_TOKEN
from sluice.pricing import Pricing
from sluice.store.ledger import LedgerWriter

CLIENT_CLOSED = 499  # nginx's convention: the client went away before the response ended


class Observer(Protocol):
    """What watches requests from outside the path: metrics, traces, the access log."""

    def settled(self, ctx: RequestContext, settlement: Settlement) -> None: ...

    def unattributed(self, ctx: RequestContext, settlement: Settlement) -> None: ...

    def streaming(self, active: bool) -> contextlib.AbstractContextManager[None]: ...


class NoObserver:
    def settled(self, ctx: RequestContext, settlement: Settlement) -> None:
        return None

    def unattributed(self, ctx: RequestContext, settlement: Settlement) -> None:
        return None

    @contextlib.contextmanager
    def streaming(self, active: bool) -> Iterator[None]:
        yield


class Exchange:
    def __init__(
        self,
        steps: Steps,
        ledger: LedgerWriter,
        pricing: Pricing,
        observer: Observer,
        *,
        durable: bool,
        keepalive_s: float | None = None,
    ) -> None:
        self.steps = steps
        self.ledger = ledger
        self.pricing = pricing
        self.observer = observer
        self.durable = durable
        self.keepalive_s = keepalive_s
        self.new_request_id = RequestIds()

    def prepare(self, ctx: RequestContext) -> None:
        if self.durable:

            async def before_end() -> None:
                # Only the row waits for the last byte: steps and observers settle after it.
                ctx.committed = self._build(ctx)
                await self.ledger.commit(ctx.committed)

            ctx.before_end = before_end

    async def admit(self, ctx: RequestContext) -> None:
        await self.steps.admit(ctx)

    async def respond(self, ctx: RequestContext, send: Send) -> None:
        upstream = ctx.upstream
        if upstream is None:
            await _send_estimate(send, ctx)
            return
        ctx.relayed = True
        with self.observer.streaming(upstream.status == 200 and upstream.is_sse):
            await relay_error_safe(ctx, upstream, send, ctx.guard, self.keepalive_s)
        if ctx.guard is not None and ctx.guard.violation is not None:
            ctx.policy_violation = str(ctx.guard.violation.meta.get("rule"))

    async def refuse(self, ctx: RequestContext, err: GatewayError, send: Send) -> None:
        ctx.status, ctx.error_code = err.status, err.code
        ctx.refusal = err
        await send_error(send, err, ctx.request_id)

    def finish(self, ctx: RequestContext) -> None:
        """The handler's ``finally``: stop watching the client, settle unless done."""
        if ctx.disconnect is not None:
            ctx.disconnect.stop()
        # ``before_end`` closes over ``ctx``: a cycle that would keep the request (its body
        # too) alive until the cycle collector ran, and make it run more often.
        ctx.before_end = None
        if ctx.client_disconnected and ctx.status in (0, 200):
            ctx.status = CLIENT_CLOSED if ctx.status == 0 else 200
        if not ctx.settled:
            self.settle(ctx)
        # The refusal's traceback holds the handler's frames, which hold ``ctx``: settled now,
        # so let go of it (the same cycle as ``before_end``'s).
        ctx.refusal = None

    def settle(self, ctx: RequestContext) -> Settlement:
        ctx.settled = True
        settlement = ctx.committed
        if settlement is None:
            settlement = self._build(ctx)
            if ctx.key is None:
                self.observer.unattributed(ctx, settlement)
                return settlement
            self.ledger.record(settlement)
        self.steps.settle(ctx, settlement)
        self.observer.settled(ctx, settlement)
        return settlement

    def _build(self, ctx: RequestContext) -> Settlement:
        reservation = ctx.reservation
        return settle_request(
            ctx,
            time.perf_counter(),
            self.pricing,
            budget_warnings=reservation.warnings if reservation is not None else (),
            refusal=ctx.refusal,
        )


async def _send_estimate(send: Send, ctx: RequestContext) -> None:
    """count_tokens when no provider that serves the model can count: a conservative estimate
    from the body size, marked as one (never a silent under-count)."""
    estimate = -(-len(ctx.body) // BYTES_PER_TOKEN)
    ctx.status = 200
    await send_json(
        send,
        200,
        {"input_tokens": estimate},
        ctx.request_id,
        [(b"x-langwatch-token-count", b"estimated")],
    )
