"""``/api/v1/budgets``: spending limits, with what is spent and reserved in the window.

A project-scoped token sees the budgets of its project: scope ``project`` with its project as
target, and scope ``virtual_key`` on one of its project's keys.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from sluice.admin.auth import Reader, Writer
from sluice.admin.errors import ApiError, not_found
from sluice.admin.state import AdminState, state_of
from sluice.admin.sync import in_force
from sluice.governance.admin_tokens import AdminIdentity
from sluice.governance.budget_admin import BudgetAdminError
from sluice.store.budgets_repo import Budget, BudgetsRepo
from sluice.store.keys_repo import KeysRepo

router = APIRouter(prefix="/budgets", tags=["budgets"])

Scope = Literal["organization", "team", "project", "virtual_key", "principal"]
Window = Literal["minute", "hour", "day", "week", "month", "total"]
Usd = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=6)]


class BudgetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Scope
    target: str = Field(min_length=1, max_length=200)
    window: Window
    limit_usd: Usd
    on_breach: Literal["block", "warn"] = "block"
    webhook_url: str | None = None
    webhook_format: Literal["json", "slack"] = "json"
    name: str | None = None


class BudgetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window: Window | None = None
    limit_usd: Usd | None = None
    on_breach: Literal["block", "warn"] | None = None
    webhook_url: str | None = None
    webhook_format: Literal["json", "slack"] | None = None
    name: str | None = None


def _micros(usd: Decimal) -> int:
    return int(usd * 1_000_000)


async def _project_of(state: AdminState, scope: str, target: str) -> str | None:
    """The project a budget belongs to, for scoping (None: not one project's)."""
    if scope == "project":
        return target
    if scope == "virtual_key":
        row = await KeysRepo(state.engine).get(target)
        return row.project if row is not None else None
    return None


async def _visible(state: AdminState, who: AdminIdentity, budget: Budget) -> bool:
    if who.project is None:
        return True
    return await _project_of(state, budget.scope, budget.target) == who.project


async def _budget(state: AdminState, who: AdminIdentity, budget_id: str) -> Budget:
    budget = await BudgetsRepo(state.engine).get(budget_id)
    if budget is None or not await _visible(state, who, budget):
        raise not_found("budget", budget_id)
    return budget


def _refused(exc: BudgetAdminError) -> ApiError:
    return ApiError(422, f"{exc.field}: {exc}" if exc.field else str(exc))


@router.post("", status_code=201, summary="Create a budget")
async def create_budget(
    body: BudgetCreate, who: Writer, request: Request, response: Response
) -> dict[str, Any]:
    state = state_of(request)
    admin = state.budgets(who)
    fields = body.model_dump(exclude={"limit_usd"})
    fields["limit_micros"] = _micros(body.limit_usd)
    try:
        if who.project is not None:  # only a budget on its own project or its keys
            target, _ = await admin.resolve_target(body.scope, body.target)
            if await _project_of(state, body.scope, target) != who.project:
                raise ApiError(403, f"token {who.name!r} may only manage project {who.project!r}")
        created = await admin.create(**fields)
    except BudgetAdminError as exc:
        raise _refused(exc) from exc
    await in_force(state, response)
    data = await admin.status(created.budget)
    data["warnings"] = created.warnings
    return data


@router.get("", summary="Budgets, with spent and reserved amounts and window bounds")
async def list_budgets(who: Reader, request: Request) -> dict[str, Any]:
    state = state_of(request)
    admin = state.budgets(who)
    shown = [b for b in await admin.list_all() if await _visible(state, who, b)]
    return {"data": [await admin.status(b) for b in shown]}


@router.get("/{budget_id}", summary="One budget")
async def get_budget(budget_id: str, who: Reader, request: Request) -> dict[str, Any]:
    state = state_of(request)
    return await state.budgets(who).status(await _budget(state, who, budget_id))


@router.patch("/{budget_id}", summary="Change limit, window, breach action, webhook or name")
async def patch_budget(
    budget_id: str, body: BudgetPatch, who: Writer, request: Request, response: Response
) -> dict[str, Any]:
    state = state_of(request)
    budget = await _budget(state, who, budget_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("window", "limit_usd", "on_breach", "webhook_format"):
        if name in changes and changes[name] is None:
            raise ApiError(422, f"{name}: may not be null")
    if "limit_usd" in changes:
        changes["limit_micros"] = _micros(changes.pop("limit_usd"))
    admin = state.budgets(who)
    try:
        updated = await admin.update(budget, changes)
    except BudgetAdminError as exc:
        raise _refused(exc) from exc
    await in_force(state, response)
    return await admin.status(updated)


@router.delete("/{budget_id}", status_code=204, summary="Delete a budget")
async def delete_budget(budget_id: str, who: Writer, request: Request, response: Response) -> None:
    state = state_of(request)
    await state.budgets(who).delete(await _budget(state, who, budget_id))
    await in_force(state, response)


@router.post("/{budget_id}/reset", summary="Count from now: earlier spend no longer counts")
async def reset_budget(
    budget_id: str, who: Writer, request: Request, response: Response
) -> dict[str, Any]:
    state = state_of(request)
    admin = state.budgets(who)
    updated = await admin.reset(await _budget(state, who, budget_id))
    await in_force(state, response)
    return await admin.status(updated)
