"""Settings -> Model Providers: a project's own credential for a provider of the server config.

The secret is sealed with the KEK (store/sealing.py) and never returned: only its kind, last
four characters and when and by whom it was set. Setting or removing one bumps the config
version, so every gateway serves that project's keys with it before the response returns.
A project-scoped token manages only its project (another project's providers are a 404).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Body, Request, Response

from sluice.admin.auth import Reader, Writer, visible
from sluice.admin.errors import ApiError
from sluice.admin.state import AdminState, state_of
from sluice.admin.sync import in_force
from sluice.config.provider_credentials import (
    Credential,
    InvalidCredential,
    apply,
    parse_credential,
)
from sluice.config.providers import AnyProviderConfig
from sluice.governance.admin_tokens import AdminIdentity
from sluice.providers.probe import probe
from sluice.store.audit_repo import AuditEntry
from sluice.store.credentials_repo import CredentialsRepo, StoredCredential
from sluice.store.sealing import KekError

router = APIRouter(tags=["providers"])
_PROJECT = "/projects/{project}/providers"


def _provider(state: AdminState, who: AdminIdentity, project: str, pid: str) -> AnyProviderConfig:
    if not visible(who, project):
        raise ApiError(404, f"no project {project!r}")
    config = state.providers.get(pid)
    if config is None:
        raise ApiError(404, f"no provider with id {pid!r} in the server config")
    return config


def _item(
    state: AdminState, pid: str, config: AnyProviderConfig, stored: StoredCredential | None
) -> dict[str, Any]:
    circuits = state.circuits() or {}
    return {
        "id": pid,
        "type": config.type,
        "override": stored.public() if stored is not None else None,
        # The gateway's breaker for this provider id, when it runs in this process.
        "circuit": circuits.get(pid),
    }


@router.get("/providers", summary="The server config's providers and their circuit breakers")
async def server_providers(who: Reader, request: Request) -> dict[str, Any]:
    """No credentials, only what `sluice providers list|status` shows. Any token may read it:
    a project-scoped one sees the same providers in its project's listing."""
    state = state_of(request)
    circuits = state.circuits() or {}
    data = [
        {"id": pid, "type": cfg.type, "models": cfg.models, "circuit": circuits.get(pid)}
        for pid, cfg in state.providers.items()
    ]
    return {"data": data, "circuits_known": bool(circuits)}


def _audit(
    state: AdminState, who: AdminIdentity, action: str, project: str, pid: str, **docs: Any
) -> AuditEntry:
    return AuditEntry(
        actor=who.name,
        action=f"providers.{action}",
        resource="provider_credential",
        resource_id=pid[:64],
        project=project,
        at=state.clock.now_ms(),
        **docs,
    )


@router.get(_PROJECT, summary="Every provider of the server config, and the project's overrides")
async def list_providers(project: str, who: Reader, request: Request) -> dict[str, Any]:
    state = state_of(request)
    if not visible(who, project):
        raise ApiError(404, f"no project {project!r}")
    stored = {c.provider_id: c for c in await CredentialsRepo(state.engine).all(project)}
    data = [_item(state, pid, cfg, stored.get(pid)) for pid, cfg in state.providers.items()]
    return {"project": project, "data": data}


@router.get(_PROJECT + "/{provider_id}", summary="One provider: whether the project overrides it")
async def one_provider(
    project: str, provider_id: str, who: Reader, request: Request
) -> dict[str, Any]:
    state = state_of(request)
    config = _provider(state, who, project, provider_id)
    stored = await CredentialsRepo(state.engine).get(project, provider_id)
    return _item(state, provider_id, config, stored)


@router.put(_PROJECT + "/{provider_id}", summary="Set the project's credential for a provider")
async def put_provider(
    project: str,
    provider_id: str,
    who: Writer,
    request: Request,
    response: Response,
    body: dict[str, Any] = Body(...),
) -> dict[str, Any]:
    state = state_of(request)
    config = _provider(state, who, project, provider_id)
    try:
        cred = parse_credential(config.type, body)
    except InvalidCredential as exc:
        raise ApiError(422, f"invalid {config.type} credential: {exc}", exc.problems) from exc
    if state.kek is None:
        raise ApiError(
            409, "no key-encryption key on the admin server: set SLUICE_KEK or secrets.kek_file"
        )
    repo = CredentialsRepo(state.engine)
    before = await repo.get(project, provider_id)
    row = {
        "project": project,
        "provider_id": provider_id,
        "kind": cred.kind,
        "last4": cred.last4,
        "set_at": state.clock.now_ms(),
        "set_by": who.name,
    }
    after = {k: v for k, v in row.items() if k not in ("project", "provider_id")}
    audit = _audit(
        state,
        who,
        "set",
        project,
        provider_id,
        before=before.public() if before else None,
        after=after,
    )
    stored = await repo.put(state.kek, row, orjson.dumps(cred.fields), audit)
    await in_force(state, response)
    return _item(state, provider_id, config, stored)


@router.delete(
    _PROJECT + "/{provider_id}", status_code=204, summary="Back to the server's credential"
)
async def delete_provider(
    project: str, provider_id: str, who: Writer, request: Request, response: Response
) -> None:
    state = state_of(request)
    _provider(state, who, project, provider_id)
    repo = CredentialsRepo(state.engine)
    before = await repo.get(project, provider_id)
    if before is None:
        raise ApiError(404, f"project {project!r} has no credential for {provider_id!r}")
    audit = _audit(state, who, "delete", project, provider_id, before=before.public())
    await repo.delete(project, provider_id, audit)
    await in_force(state, response)


@router.post(_PROJECT + "/{provider_id}/test", summary="Call the provider's models endpoint")
async def test_provider(
    project: str, provider_id: str, who: Writer, request: Request
) -> dict[str, Any]:
    """With the project's credential when it has one, else the server's."""
    state = state_of(request)
    config = _provider(state, who, project, provider_id)
    stored = await CredentialsRepo(state.engine).get(project, provider_id)
    credential = "server"
    if stored is not None:
        if state.kek is None:
            raise ApiError(409, "no key-encryption key on the admin server to open it")
        try:
            fields = orjson.loads(stored.open(state.kek))
        except KekError as exc:
            raise ApiError(409, str(exc)) from exc
        config = apply(config, Credential(stored.kind, fields))
        credential = "project"
    return {"id": provider_id, "credential": credential, **await probe(config, provider_id)}
