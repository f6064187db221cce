"""Keys: list with filters, mint (the secret once, with the lines for Claude Code), key detail
with config editing, rotate, disable, enable, revoke."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from starlette.responses import Response

from sluice.admin.console import inproc
from sluice.admin.console.common import console_of, form, page, redirect, signed_in
from sluice.admin.console.session import Session

router = APIRouter()
ACTIONS = ("disable", "enable", "revoke")
MINT_FIELDS = ("name", "project", "principal", "team", "description")


def gateway_url(request: Request) -> str:
    return console_of(request).gateway_url()


async def _list_page(request: Request, session: Session, status: int = 200, **ctx: Any) -> Response:
    filters = {k: request.query_params.get(k, "") for k in ("project", "principal", "status")}
    answer = await inproc.call(request, "GET", "/keys", query=filters)
    keys = answer.body["data"] if answer.ok else []
    return page(
        request, "keys.html", session, status, keys=keys, filters=filters, api_error=None, **ctx
    )


@router.get("/keys")
async def keys_page(request: Request) -> Response:
    return await _list_page(request, await signed_in(request))


def _minted(request: Request, session: Session, body: dict[str, Any], verb: str) -> Response:
    base = gateway_url(request)
    secret = body["key"]
    exports = f"export ANTHROPIC_BASE_URL={base}\nexport ANTHROPIC_AUTH_TOKEN={secret}"
    envrc = f"# .envrc (direnv): Claude Code through Sluice\n{exports}\n"
    return page(
        request, "minted.html", session, key=body, secret=secret, exports=exports, envrc=envrc,
        verb=verb,
    )  # fmt: skip


@router.post("/keys")
async def mint(request: Request) -> Response:
    session = await signed_in(request)
    fields = await form(request, session)
    body: dict[str, Any] = {k: fields[k].strip() for k in MINT_FIELDS if fields.get(k, "").strip()}
    body["test"] = fields.get("test") == "on"
    answer = await inproc.call(request, "POST", "/keys", csrf=session.csrf, json=body)
    if not answer.ok:
        return await _list_page(
            request, session, 422 if answer.status == 422 else answer.status,
            mint_error=answer.error, mint_values=fields,
        )  # fmt: skip
    return _minted(request, session, answer.body, "minted")


def _config_text(key: dict[str, Any]) -> str:
    document = key.get("config") or {}
    return yaml.safe_dump(document, sort_keys=False) if document else ""


async def _detail(
    request: Request, session: Session, key_id: str, status: int = 200, **ctx: Any
) -> Response:
    answer = await inproc.call(request, "GET", f"/keys/{key_id}")
    if not answer.ok:
        return page(request, "error.html", session, answer.status, message=answer.error)
    ctx.setdefault("config_text", _config_text(answer.body))
    done = request.query_params.get("done")
    return page(request, "key_detail.html", session, status, key=answer.body, done=done, **ctx)


@router.get("/keys/{key_id}")
async def key_page(key_id: str, request: Request) -> Response:
    return await _detail(request, await signed_in(request), key_id)


def _parse(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The config document from YAML (JSON is YAML too), or why not."""
    try:
        document = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        return None, f"not valid YAML or JSON: {exc}"
    if not isinstance(document, dict):
        return None, "the config must be a mapping (key: value), not a list or a scalar"
    return document, None


@router.post("/keys/{key_id}/config")
async def save_config(key_id: str, request: Request) -> Response:
    session = await signed_in(request)
    text = (await form(request, session)).get("config", "")
    document, problem = _parse(text)
    if document is None:
        return await _detail(
            request, session, key_id, 422, config_text=text, config_error=problem, problems=[]
        )
    answer = await inproc.call(
        request, "PATCH", f"/keys/{key_id}", csrf=session.csrf, json={"config": document}
    )
    if not answer.ok:
        return await _detail(
            request, session, key_id, answer.status, config_text=text,
            config_error=answer.error, problems=answer.problems,
        )  # fmt: skip
    return redirect(f"/keys/{key_id}?done=config")


@router.post("/keys/{key_id}/rotate")
async def rotate(key_id: str, request: Request) -> Response:
    session = await signed_in(request)
    fields = await form(request, session)
    grace = fields.get("grace_s", "").strip()
    body = {"grace_s": int(grace)} if grace.isdigit() else {}
    answer = await inproc.call(
        request, "POST", f"/keys/{key_id}/rotate", csrf=session.csrf, json=body
    )
    if not answer.ok:
        return await _detail(request, session, key_id, answer.status, action_error=answer.error)
    return _minted(request, session, answer.body, "rotated")


@router.post("/keys/{key_id}/{action}")
async def set_status(key_id: str, action: str, request: Request) -> Response:
    session = await signed_in(request)
    await form(request, session)
    if action not in ACTIONS:
        return page(request, "error.html", session, 404, message=f"no action {action!r}")
    answer = await inproc.call(request, "POST", f"/keys/{key_id}/{action}", csrf=session.csrf)
    if not answer.ok:
        return await _detail(request, session, key_id, answer.status, action_error=answer.error)
    return redirect(f"/keys/{key_id}?done={action}")
