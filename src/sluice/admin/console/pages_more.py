"""Messages (turns by agent and session, each turn's span tree), Providers and Audit."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sluice.admin.console import inproc, turns_view
from sluice.admin.console.common import console_of, form, page, signed_in
from sluice.admin.console.session import Session
from sluice.admin.state import state_of

router = APIRouter()
PROVIDERS_API = "/api/v1/projects/{project}/providers"


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


def _providers_api(request: Request) -> bool:
    """Whether the per-project providers API is in this build (another branch adds it)."""
    return any(getattr(r, "path", "").startswith(PROVIDERS_API) for r in request.app.routes)


async def _projects(request: Request, session: Session) -> list[str]:
    if session.who.project is not None:
        return [session.who.project]
    answer = await inproc.call(request, "GET", "/keys")
    found = {k["project"] for k in answer.body["data"] if k["project"]} if answer.ok else set()
    return sorted(found)


async def _providers_page(
    request: Request, session: Session, status: int = 200, **ctx: Any
) -> Response:
    console = console_of(request)
    circuits = console.circuits() or {}
    server = [
        {"id": pid, "type": p.type, "models": list(getattr(p, "models", []) or []),
         "circuit": circuits.get(pid)}
        for pid, p in console.config.providers.items()
    ]  # fmt: skip
    project = request.query_params.get("project") or ctx.pop("project", "")
    available = _providers_api(request)
    credentials: list[Any] = []
    if available and project:
        answer = await inproc.call(request, "GET", f"/projects/{project}/providers")
        if answer.ok:
            body = answer.body
            credentials = body.get("data", []) if isinstance(body, dict) else list(body or [])
    return page(
        request, "providers.html", session, status, server=server, in_process=bool(circuits),
        available=available, project=project, projects=await _projects(request, session),
        credentials=credentials, **ctx,
    )  # fmt: skip


@router.get("/providers")
async def providers(request: Request) -> Response:
    return await _providers_page(request, await signed_in(request))


@router.post("/providers")
async def set_credential(request: Request) -> Response:
    session = await signed_in(request)
    fields = await form(request, session)
    project, provider = fields.get("project", "").strip(), fields.get("provider", "").strip()
    if not _providers_api(request):
        return await _providers_page(request, session, 404, project=project)
    # The documented shape (issue #15): a credential per project and server-config provider id.
    answer = await inproc.call(
        request, "PUT", f"/projects/{project}/providers/{provider}", csrf=session.csrf,
        json={"api_key": fields.get("api_key", "")},
    )  # fmt: skip
    if not answer.ok:
        return await _providers_page(
            request, session, answer.status, project=project, set_error=answer.error
        )
    return await _providers_page(request, session, project=project, done=provider)


@router.get("/audit")
async def audit(request: Request) -> Response:
    session = await signed_in(request)
    cursor = request.query_params.get("cursor")
    answer = await inproc.call(request, "GET", "/audit", query={"limit": 50, "cursor": cursor})
    if not answer.ok:
        return page(request, "error.html", session, answer.status, message=answer.error)
    body = answer.body
    return page(request, "audit.html", session, rows=body["data"], next_cursor=body["next_cursor"])
