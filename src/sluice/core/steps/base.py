"""The pipeline: an ordered list of steps, each with ``admit`` and an optional ``settle``.

``admit`` runs in order and may refuse the request by raising a ``GatewayError``. ``settle``
runs for every step, in reverse order, exactly once per request, whatever happened (a step
that was never reached finds nothing of its own on the context and does nothing). What a step
holds between the two (a rate-limit lease, a budget reservation, a tool guard) lives on the
context, never in the step: steps are shared by every request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from sluice.base.settlement import Settlement
from sluice.core.context import RequestContext

log = logging.getLogger("sluice")


class Step(Protocol):
    async def admit(self, ctx: RequestContext) -> None: ...

    def settle(self, ctx: RequestContext, settlement: Settlement) -> None:
        """Release what ``admit`` took, given the request's settlement. Synchronous on
        purpose: it runs in ``finally`` blocks; remote work is spawned, never awaited."""
        ...


class SettleNothing:
    """Mixin for steps that hold nothing past ``admit`` (``Steps`` never settles them)."""

    def settle(self, ctx: RequestContext, settlement: Settlement) -> None:
        return None


class Steps:
    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = tuple(steps)
        # Settled in reverse order; steps that hold nothing (``SettleNothing``) are left out
        # once, here, not called for nothing on every request.
        self.settlers = tuple(s for s in reversed(self.steps) if not isinstance(s, SettleNothing))

    async def admit(self, ctx: RequestContext) -> None:
        for step in self.steps:
            await step.admit(ctx)

    def settle(self, ctx: RequestContext, settlement: Settlement) -> None:
        for step in self.settlers:
            try:
                step.settle(ctx, settlement)
            except Exception:  # one step's failure must not keep the others' holds
                log.exception("settling %s failed", type(step).__name__)
