"""Budget lifecycle for admins: create, change, reset, delete, and what a budget shows.

Shared by ``sluice budgets`` and the admin API. Every write bumps the config version (the
repository does, in its transaction) and leaves an audit row committed with the change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ulid import ULID

from sluice.backends.protocols import BudgetCounters
from sluice.base.clock import Clock
from sluice.governance.key_admin import KeyAdminError, resolve_key
from sluice.governance.windows import WINDOWS, window_bounds
from sluice.store.audit_repo import AuditEntry
from sluice.store.budgets_repo import SCOPES, Budget, BudgetsRepo
from sluice.store.keys_repo import KeysRepo

BREACH_ACTIONS = ("block", "warn")
WEBHOOK_FORMATS = ("json", "slack")
EDITABLE = ("name", "window", "limit_micros", "on_breach", "webhook_url", "webhook_format")


class BudgetAdminError(Exception):
    """A refused budget action; ``field`` names the offending input when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def check_fields(values: dict[str, Any]) -> None:
    """Every closed-vocabulary field that is present must hold one of its values."""
    allowed = {
        "scope": SCOPES,
        "window": WINDOWS,
        "on_breach": BREACH_ACTIONS,
        "webhook_format": WEBHOOK_FORMATS,
    }
    for name, choices in allowed.items():
        value = values.get(name)
        if value is not None and value not in choices:
            raise BudgetAdminError(f"{name} must be one of {', '.join(choices)}", name)
    limit = values.get("limit_micros")
    if limit is not None and limit <= 0:
        raise BudgetAdminError("the limit must be positive", "limit_usd")


@dataclass(frozen=True)
class Created:
    budget: Budget
    warnings: list[str]  # e.g. a target no key carries yet


class BudgetAdmin:
    def __init__(
        self,
        repo: BudgetsRepo,
        keys: KeysRepo,
        clock: Clock,
        actor: str = "cli",
        counters: BudgetCounters | None = None,
    ) -> None:
        self._repo = repo
        self._keys = keys
        self._clock = clock
        self._actor = actor
        self._counters = counters  # the gateway's, when it runs in this process (reserved)

    def _audit(self, action: str, before: Budget | None, after: Budget | None) -> AuditEntry:
        subject = after or before
        assert subject is not None
        return AuditEntry(
            actor=self._actor,
            action=f"budgets.{action}",
            resource="budget",
            resource_id=subject.id,
            project=subject.target if subject.scope == "project" else None,
            before=before.public_dict() if before else None,
            after=after.public_dict() if after else None,
            at=self._clock.now_ms(),
        )

    async def list_all(self) -> list[Budget]:
        return await self._repo.list_all()

    async def resolve(self, ident: str) -> Budget:
        found = await self._repo.find(ident)
        if len(found) != 1:
            raise BudgetAdminError(
                f"no budget with id or name {ident!r}" if not found else f"{ident!r} is ambiguous"
            )
        return found[0]

    async def create(self, **fields: Any) -> Created:
        """``fields``: scope, target, window, limit_micros, on_breach and optionally name,
        webhook_url, webhook_format."""
        check_fields(fields)
        now = self._clock.now_ms()
        target, warnings = await self.resolve_target(fields["scope"], fields["target"])
        budget = Budget(
            id=str(ULID()), created_at=now, updated_at=now, **{**fields, "target": target}
        )
        await self._repo.insert(budget, self._audit("create", None, budget))
        return Created(budget, warnings)

    async def resolve_target(self, scope: str, target: str) -> tuple[str, list[str]]:
        """A virtual_key target becomes the key's id (it may be given as a prefix or a name);
        a target no key carries yet is a warning, since the budget would apply to nothing."""
        if scope == "virtual_key":
            try:
                return (await resolve_key(self._keys, target)).id, []
            except KeyAdminError as exc:
                if "matches" in str(exc):
                    raise BudgetAdminError(str(exc), "target") from exc
                return target, [
                    f"no key with id, display prefix or name {target!r} exists yet; "
                    "this budget applies to nothing until one does"
                ]
        if not await self._keys.field_in_use(scope, target):
            return target, [f"no key has {scope} {target!r} yet; this budget applies once one does"]
        return target, []

    async def update(self, budget: Budget, changes: dict[str, Any]) -> Budget:
        check_fields(changes)
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise BudgetAdminError(f"cannot change {', '.join(sorted(unknown))}")
        updated = dataclasses.replace(budget, updated_at=self._clock.now_ms(), **changes)
        await self._repo.save(updated, self._audit("update", budget, updated))
        return updated

    async def reset(self, budget: Budget) -> Budget:
        """Start counting from now: spend before this moment no longer counts."""
        now = self._clock.now_ms()
        updated = dataclasses.replace(budget, reset_at=now, updated_at=now)
        await self._repo.save(updated, self._audit("reset", budget, updated))
        return updated

    async def delete(self, budget: Budget) -> None:
        await self._repo.delete(budget.id, self._audit("delete", budget, None))

    async def status(self, budget: Budget) -> dict[str, Any]:
        """The budget with its current window, what is spent in it (the ledger) and what
        requests in flight hold (the counters; null when this process has none to read)."""
        start, end = window_bounds(budget.window, self._clock.now_ms())
        data = budget.public_dict()
        data["window_start"] = start
        data["window_end"] = end
        data["spent_usd"] = await self._repo.spent_micros(budget, start) / 1_000_000
        reserved = None
        if self._counters is not None:
            counter = (budget.id, max(start, budget.reset_at))
            reserved = await self._counters.reserved_amount(counter) / 1_000_000
        data["reserved_usd"] = reserved
        return data
