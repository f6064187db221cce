"""``/api/v1/keys``: mint, list, read, edit, rotate, disable, enable and revoke virtual keys.

``DELETE`` revokes (final) rather than erasing the row: the ledger keeps naming the key, and a
revoked key is refused on every replica at once, while an erased one could linger in a
replica's key cache until its next full resync.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from sluice.admin.auth import Reader, Writer, may_place_in, visible
from sluice.admin.errors import ApiError, not_found
from sluice.admin.state import AdminState, state_of
from sluice.admin.sync import in_force
from sluice.config.loader import ConfigProblems
from sluice.config.vk import VirtualKeyConfig
from sluice.governance.admin_tokens import AdminIdentity
from sluice.governance.key_admin import DEFAULT_ROTATION_GRACE_S, KeyAdminError
from sluice.governance.virtual_key import VirtualKey, key_from_row
from sluice.store.keys_repo import KeysRepo

router = APIRouter(prefix="/keys", tags=["keys"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    project: str | None = None
    principal: str | None = None
    team: str | None = None
    organization: str | None = None
    expires_at: int | None = Field(default=None, description="ms since the epoch (UTC)")
    test: bool = Field(default=False, description="mint an lw_vk_test_ key")
    config: dict[str, Any] | None = Field(default=None, description="the key config document")


class KeyPatch(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    project: str | None = None
    principal: str | None = None
    team: str | None = None
    organization: str | None = None
    expires_at: int | None = None
    config: dict[str, Any] | None = Field(default=None, description="replaces the whole config")


class Rotate(_Body):
    grace_s: int = Field(default=DEFAULT_ROTATION_GRACE_S, ge=0)


def _parse_config(document: dict[str, Any]) -> VirtualKeyConfig:
    try:
        return VirtualKeyConfig.parse(document, "config")
    except ConfigProblems as exc:
        problems = [
            type(p)(f"config.{p.path}" if p.path else "config", p.message) for p in exc.problems
        ]
        raise ApiError(
            422, "invalid key config: " + "; ".join(map(str, problems)), problems
        ) from exc


async def _key(state: AdminState, who: AdminIdentity, key_id: str) -> VirtualKey:
    row = await KeysRepo(state.engine).get(key_id)
    if row is None or not visible(who, row.project):
        raise not_found("key", key_id)
    return key_from_row(row)


async def _done(
    state: AdminState, response: Response, key: VirtualKey, secret: str | None = None
) -> dict[str, Any]:
    await in_force(state, response)
    body = key.public_dict()
    if secret is not None:
        body["key"] = secret  # shown this once
    return body


@router.post("", status_code=201, summary="Mint a key; its secret is in `key`, this once")
async def create_key(
    body: KeyCreate, who: Writer, request: Request, response: Response
) -> dict[str, Any]:
    state = state_of(request)
    project = body.project if body.project is not None else who.project
    may_place_in(who, project)
    fields = body.model_dump(exclude={"config", "project"})
    config = _parse_config(body.config) if body.config is not None else None
    try:
        minted = await state.keys(who).create(**fields, project=project, config=config)
    except KeyAdminError as exc:
        raise ApiError(422, str(exc)) from exc
    return await _done(state, response, minted.key, minted.secret)


@router.get("", summary="List keys (never their secrets)")
async def list_keys(
    who: Reader,
    request: Request,
    project: Annotated[str | None, Query()] = None,
    principal: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query(pattern="^(active|disabled|revoked)$")] = None,
) -> dict[str, Any]:
    keys = await state_of(request).keys(who).list_all()
    wanted = [
        k.public_dict()
        for k in keys
        if visible(who, k.project)
        and (project is None or k.project == project)
        and (principal is None or k.principal == principal)
        and (status is None or k.status == status)
    ]
    return {"data": wanted}


@router.get("/{key_id}", summary="One key")
async def get_key(key_id: str, who: Reader, request: Request) -> dict[str, Any]:
    return (await _key(state_of(request), who, key_id)).public_dict()


@router.patch("/{key_id}", summary="Edit a key's fields or replace its config")
async def patch_key(
    key_id: str, body: KeyPatch, who: Writer, request: Request, response: Response
) -> dict[str, Any]:
    state = state_of(request)
    key = await _key(state, who, key_id)
    given = body.model_dump(exclude_unset=True)
    if "project" in given:
        may_place_in(who, given["project"])
    config = _parse_config(given.pop("config")) if given.get("config") is not None else None
    given.pop("config", None)
    try:
        updated = await state.keys(who).update(key.id, config=config, fields=given)
    except KeyAdminError as exc:
        raise ApiError(422, str(exc)) from exc
    return await _done(state, response, updated)


@router.delete("/{key_id}", status_code=204, summary="Revoke a key (final; the row is kept)")
async def delete_key(key_id: str, who: Writer, request: Request, response: Response) -> None:
    state = state_of(request)
    key = await _key(state, who, key_id)
    await state.keys(who).set_status(key.id, "revoked")
    await in_force(state, response)


@router.post("/{key_id}/rotate", summary="New secret; the old one works for grace_s more")
async def rotate_key(
    key_id: str, who: Writer, request: Request, response: Response, body: Rotate | None = None
) -> dict[str, Any]:
    state = state_of(request)
    key = await _key(state, who, key_id)
    grace = (body or Rotate()).grace_s
    try:
        minted = await state.keys(who).rotate(key.id, grace)
    except KeyAdminError as exc:
        raise ApiError(409, str(exc)) from exc
    return await _done(state, response, minted.key, minted.secret)


async def _set_status(
    key_id: str, status: str, who: AdminIdentity, request: Request, response: Response
) -> dict[str, Any]:
    state = state_of(request)
    key = await _key(state, who, key_id)
    try:
        updated = await state.keys(who).set_status(key.id, status)
    except KeyAdminError as exc:
        raise ApiError(409, str(exc)) from exc
    return await _done(state, response, updated)


@router.post("/{key_id}/disable", summary="Disable a key (reversible)")
async def disable_key(
    key_id: str, who: Writer, request: Request, response: Response
) -> dict[str, Any]:
    return await _set_status(key_id, "disabled", who, request, response)


@router.post("/{key_id}/enable", summary="Re-enable a disabled key")
async def enable_key(
    key_id: str, who: Writer, request: Request, response: Response
) -> dict[str, Any]:
    return await _set_status(key_id, "active", who, request, response)


@router.post("/{key_id}/revoke", summary="Revoke a key (final)")
async def revoke_key(
    key_id: str, who: Writer, request: Request, response: Response
) -> dict[str, Any]:
    return await _set_status(key_id, "revoked", who, request, response)
