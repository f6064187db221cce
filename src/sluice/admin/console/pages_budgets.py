"""Budgets: each with a bar of spent and reserved against its limit, and a create form."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sluice.admin.console import charts, inproc
from sluice.admin.console.common import form, page, redirect, signed_in
from sluice.admin.console.session import Session

router = APIRouter()
FIELDS = ("scope", "target", "window", "limit_usd", "on_breach", "name", "webhook_url")


def _with_bar(budget: dict[str, Any]) -> dict[str, Any]:
    spent = float(budget.get("spent_usd") or 0)
    reserved = budget.get("reserved_usd")
    limit = float(budget.get("limit_usd") or 0)
    label = f"{budget.get('name') or budget['target']}: ${spent:.4f} spent of ${limit:.2f}"
    budget["bar"] = charts.budget_bar(spent, reserved, limit, label)
    budget["percent"] = (spent / limit * 100) if limit else 0.0
    return budget


async def _page(request: Request, session: Session, status: int = 200, **ctx: Any) -> Response:
    answer = await inproc.call(request, "GET", "/budgets")
    budgets = [_with_bar(b) for b in answer.body["data"]] if answer.ok else []
    return page(request, "budgets.html", session, status, budgets=budgets, **ctx)


@router.get("/budgets")
async def budgets_page(request: Request) -> Response:
    return await _page(request, await signed_in(request))


@router.post("/budgets")
async def create(request: Request) -> Response:
    session = await signed_in(request)
    fields = await form(request, session)
    body: dict[str, Any] = {k: fields[k].strip() for k in FIELDS if fields.get(k, "").strip()}
    answer = await inproc.call(request, "POST", "/budgets", csrf=session.csrf, json=body)
    if not answer.ok:
        return await _page(
            request, session, answer.status, create_error=answer.error, values=fields,
            problems=answer.problems,
        )  # fmt: skip
    return redirect("/budgets")


@router.post("/budgets/{budget_id}/{action}")
async def act(budget_id: str, action: str, request: Request) -> Response:
    session = await signed_in(request)
    await form(request, session)
    method, path = {
        "reset": ("POST", f"/budgets/{budget_id}/reset"),
        "delete": ("DELETE", f"/budgets/{budget_id}"),
    }.get(action, ("", ""))
    if not method:
        return page(request, "error.html", session, 404, message=f"no action {action!r}")
    answer = await inproc.call(request, method, path, csrf=session.csrf)
    if not answer.ok:
        return await _page(request, session, answer.status, create_error=answer.error)
    return redirect("/budgets")
