"""Messages (turns by agent and session, each turn's span tree) and Audit."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from sluice.admin.console import inproc, turns_view
from sluice.admin.console.common import page, signed_in
from sluice.admin.state import state_of

router = APIRouter()


@router.get("/messages")
async def messages(request: Request) -> Response:
    session = await signed_in(request)
    rows = await turns_view.turns(state_of(request).engine, session.who.project)
    return page(request, "messages.html", session, groups=turns_view.grouped(rows))


@router.get("/messages/{trace_id}")
async def turn(trace_id: str, request: Request) -> Response:
    session = await signed_in(request)
    found = await turns_view.tree(state_of(request).engine, trace_id, session.who.project)
    if found is None:
        return page(request, "error.html", session, 404, message=f"no turn {trace_id!r}")
    _, flat = found
    return page(request, "turn.html", session, trace_id=trace_id, spans=flat)


@router.get("/audit")
async def audit(request: Request) -> Response:
    session = await signed_in(request)
    cursor = request.query_params.get("cursor")
    answer = await inproc.call(request, "GET", "/audit", query={"limit": 50, "cursor": cursor})
    if not answer.ok:
        return page(request, "error.html", session, answer.status, message=answer.error)
    body = answer.body
    return page(request, "audit.html", session, rows=body["data"], next_cursor=body["next_cursor"])
