"""Providers ("Settings -> Model Providers"): per project, every server-config provider with the
project's own credential if it has one (kind, last four, set when and by whom; never the
secret), its circuit breaker, a form per provider type, remove and test connection.

All of it goes through ``/api/v1/projects/{project}/providers`` in-process, so validation,
roles, project scoping, sealing and the audit log are the API's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from sluice.admin.console import inproc
from sluice.admin.console.common import console_of, form, page, redirect, signed_in
from sluice.admin.console.session import Session

router = APIRouter()

# The form fields each provider type takes (the API validates the combination: for Bedrock
# access keys or a bearer token, for Vertex a service account or an access token).
FIELDS: dict[str, tuple[str, ...]] = {
    "anthropic": ("api_key",),
    "openai": ("api_key",),
    "bedrock": ("access_key_id", "secret_access_key", "session_token", "bearer_token"),
    "vertex": ("service_account_json", "access_token"),
}
DONE = {"set": "credential saved", "delete": "credential removed; the server's is used again"}


def _path(project: str, provider_id: str = "") -> str:
    return f"/projects/{project}/providers" + (f"/{provider_id}" if provider_id else "")


async def _projects(request: Request, session: Session) -> list[str]:
    """Projects to pick from: the session's own, or every project some key belongs to."""
    if session.who.project is not None:
        return [session.who.project]
    answer = await inproc.call(request, "GET", "/keys")
    found = {k["project"] for k in answer.body["data"] if k["project"]} if answer.ok else set()
    return sorted(found)


def _server_only(request: Request) -> list[dict[str, Any]]:
    """Before a project is picked: the server config and the breakers, read in-process."""
    console = console_of(request)
    circuits = console.circuits() or {}
    return [
        {"id": pid, "type": p.type, "override": None, "circuit": circuits.get(pid)}
        for pid, p in console.config.providers.items()
    ]


async def _page(
    request: Request, session: Session, project: str, status: int = 200, **ctx: Any
) -> Response:
    """``ctx`` may carry ``focus`` (a provider id) with ``set_error``/``problems``/``tested``."""
    providers, load_error = _server_only(request), None
    if project:
        answer = await inproc.call(request, "GET", _path(project))
        if answer.ok:
            providers = answer.body["data"]
        else:
            load_error = answer.error
    return page(
        request, "providers.html", session, status, project=project, providers=providers,
        projects=await _projects(request, session), load_error=load_error, fields=FIELDS,
        in_process=console_of(request).circuits() is not None, **ctx,
    )  # fmt: skip


def _project_of(request: Request, session: Session, given: str | None) -> str:
    if session.who.project is not None:
        return session.who.project  # a project-scoped token has just the one
    return (given or "").strip()


@router.get("/providers")
async def providers(request: Request) -> Response:
    session = await signed_in(request)
    project = _project_of(request, session, request.query_params.get("project"))
    done = DONE.get(request.query_params.get("done", ""))
    focus = request.query_params.get("provider", "")
    return await _page(request, session, project, done=done, focus=focus if done else "")


def _credential(fields: dict[str, str]) -> dict[str, str]:
    """The credential fields the form filled in; empty ones are left out (not "")."""
    wanted = {f for names in FIELDS.values() for f in names}
    return {k: v.strip() for k, v in fields.items() if k in wanted and v.strip()}


@router.post("/providers/{provider_id}/{action}")
async def act(provider_id: str, action: str, request: Request) -> Response:
    session = await signed_in(request)
    fields = await form(request, session)
    project = _project_of(request, session, fields.get("project"))
    if not project or action not in ("set", "delete", "test"):
        return await _page(
            request, session, project, 400, focus=provider_id,
            set_error="Pick a project first." if not project else f"no action {action!r}",
        )  # fmt: skip
    method, path, body = {
        "set": ("PUT", _path(project, provider_id), _credential(fields)),
        "delete": ("DELETE", _path(project, provider_id), None),
        "test": ("POST", _path(project, provider_id) + "/test", None),
    }[action]
    answer = await inproc.call(request, method, path, csrf=session.csrf, json=body)
    if not answer.ok:
        return await _page(
            request, session, project, answer.status, focus=provider_id,
            set_error=answer.error, problems=answer.problems, failed=action,
        )  # fmt: skip
    if action == "test":
        return await _page(request, session, project, focus=provider_id, tested=answer.body)
    query = urlencode({"project": project, "done": action, "provider": provider_id})
    return redirect(f"/providers?{query}#prov-{provider_id}")
