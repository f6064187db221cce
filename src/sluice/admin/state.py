"""What the admin app holds between requests, built at its start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.backends.protocols import BudgetCounters
from sluice.base.clock import Clock
from sluice.config.providers import AnyProviderConfig
from sluice.governance.admin_tokens import AdminIdentity, TokenAdmin
from sluice.governance.budget_admin import BudgetAdmin
from sluice.governance.key_admin import KeyAdmin
from sluice.store.budgets_repo import BudgetsRepo
from sluice.store.keys_repo import KeysRepo

# The gateway's budget counters when it runs in the same process (in-flight reservations);
# None elsewhere, and then budgets show ``reserved_usd: null``.
CountersSource = Callable[[], BudgetCounters | None]
# The gateway's circuit breakers (provider id -> snapshot) when it runs in this process.
CircuitsSource = Callable[[], dict[str, dict[str, object]] | None]


def no_circuits() -> None:
    return None


@dataclass(frozen=True)
class AdminState:
    engine: AsyncEngine
    secret: bytes
    clock: Clock
    tokens: TokenAdmin
    ack_timeout_s: float
    counters: CountersSource
    # Provider credentials per project: the server's providers and the KEK (None: unset).
    providers: dict[str, AnyProviderConfig] = field(default_factory=dict)
    kek: bytes | None = None
    circuits: CircuitsSource = no_circuits

    def keys(self, who: AdminIdentity) -> KeyAdmin:
        return KeyAdmin(KeysRepo(self.engine), self.secret, self.clock, actor=who.name)

    def budgets(self, who: AdminIdentity) -> BudgetAdmin:
        return BudgetAdmin(
            BudgetsRepo(self.engine),
            KeysRepo(self.engine),
            self.clock,
            actor=who.name,
            counters=self.counters(),
        )


def state_of(request: Request) -> AdminState:
    state: AdminState = request.app.state.admin
    return state
