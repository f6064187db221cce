"""Key lifecycle for admins: create, rotate, disable, enable, revoke, update config.

Every write bumps ``updated_at``; serving processes poll for that, so a change made here is
seen everywhere within ``server.key_refresh_seconds``. Every write also leaves an audit row
(``actor``: ``cli`` or the admin token's name), committed with the change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sluice.base.clock import Clock
from sluice.config.vk import VirtualKeyConfig
from sluice.governance import vk_format
from sluice.governance.virtual_key import VirtualKey, key_from_row, key_to_row
from sluice.store.audit_repo import AuditEntry
from sluice.store.keys_repo import KeysRepo

DEFAULT_ROTATION_GRACE_S = 24 * 3600


class KeyAdminError(Exception):
    """A refused admin action, with a message fit for the terminal."""


@dataclass(frozen=True)
class MintedKey:
    key: VirtualKey
    secret: str  # shown once, never stored


async def resolve_key(repo: KeysRepo, ident: str) -> VirtualKey:
    """The one key ``ident`` names: an id, display prefix, unique name, or a whole key.

    An exact id wins; several matches are an error that lists them, so the caller can pick.
    """
    parsed = vk_format.parse_key(ident.strip())
    ident = parsed.key_id if parsed is not None else ident.strip()
    found = [key_from_row(row) for row in await repo.find(ident)]
    exact = [k for k in found if k.id == ident]
    if exact:
        return exact[0]
    if not found:
        raise KeyAdminError(f"no key with id, display prefix or name {ident!r}")
    if len(found) > 1:
        matches = "; ".join(f"{k.id} ({k.display_prefix}, name {k.name!r})" for k in found)
        raise KeyAdminError(f"{ident!r} matches {len(found)} keys: {matches}; use the id")
    return found[0]


class KeyAdmin:
    def __init__(
        self, repo: KeysRepo, server_secret: bytes, clock: Clock, actor: str = "cli"
    ) -> None:
        self._repo = repo
        self._secret = server_secret
        self._clock = clock
        self._actor = actor

    def _audit(self, action: str, before: VirtualKey | None, after: VirtualKey) -> AuditEntry:
        return AuditEntry(
            actor=self._actor,
            action=f"keys.{action}",
            resource="key",
            resource_id=after.id,
            project=after.project
            if after.project is not None
            else getattr(before, "project", None),
            before=before.public_dict() if before is not None else None,
            after=after.public_dict(),
            at=self._clock.now_ms(),
        )

    async def create(
        self,
        *,
        name: str,
        description: str | None = None,
        project: str | None = None,
        principal: str | None = None,
        team: str | None = None,
        organization: str | None = None,
        expires_at: int | None = None,
        test: bool = False,
        config: VirtualKeyConfig | None = None,
    ) -> MintedKey:
        now = self._clock.now_ms()
        if expires_at is not None and expires_at <= now:
            raise KeyAdminError("--expires is in the past")
        key_id = vk_format.new_key_id()
        secret = vk_format.mint_key(key_id, test=test)
        record = VirtualKey(
            id=key_id,
            name=name,
            description=description,
            project=project,
            principal=principal,
            team=team,
            organization=organization,
            environment="test" if test else "live",
            display_prefix=vk_format.display_prefix(secret),
            key_hash=vk_format.hash_key(self._secret, secret),
            status="active",
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
            config=config or VirtualKeyConfig(),
        )
        await self._repo.insert(key_to_row(record), self._audit("create", None, record))
        return MintedKey(record, secret)

    async def list_all(self) -> list[VirtualKey]:
        return [key_from_row(row) for row in await self._repo.list_all()]

    async def resolve(self, ident: str) -> VirtualKey:
        """A key by its id, display prefix, name, or the full key itself."""
        return await resolve_key(self._repo, ident)

    async def _write(self, action: str, key: VirtualKey, **changes: Any) -> VirtualKey:
        updated = dataclasses.replace(key, updated_at=self._clock.now_ms(), **changes)
        await self._repo.save(key_to_row(updated), self._audit(action, key, updated))
        return updated

    async def rotate(self, id_or_prefix: str, grace_s: int = DEFAULT_ROTATION_GRACE_S) -> MintedKey:
        key = await self.resolve(id_or_prefix)
        if key.status == "revoked":
            raise KeyAdminError("a revoked key cannot be rotated")
        secret = vk_format.mint_key(key.id, test=key.environment == "test")
        updated = await self._write(
            "rotate",
            key,
            key_hash=vk_format.hash_key(self._secret, secret),
            previous_key_hash=key.key_hash if grace_s > 0 else None,
            previous_valid_until=self._clock.now_ms() + grace_s * 1000 if grace_s > 0 else None,
            display_prefix=vk_format.display_prefix(secret),
        )
        return MintedKey(updated, secret)

    async def set_status(self, id_or_prefix: str, status: str) -> VirtualKey:
        key = await self.resolve(id_or_prefix)
        if key.status == "revoked" and status != "revoked":
            raise KeyAdminError("revocation is final; create a new key instead")
        extra: dict[str, Any] = {}
        if status == "revoked":
            extra = {"previous_key_hash": None, "previous_valid_until": None}
        action = {"active": "enable", "disabled": "disable"}.get(status, "revoke")
        return await self._write(action, key, status=status, **extra)

    async def update(
        self,
        id_or_prefix: str,
        *,
        config: VirtualKeyConfig | None = None,
        fields: dict[str, Any] | None = None,
    ) -> VirtualKey:
        key = await self.resolve(id_or_prefix)
        changes = dict(fields or {})
        if config is not None:
            changes["config"] = config
        expires_at = changes.get("expires_at")
        if expires_at is not None and expires_at <= self._clock.now_ms():
            raise KeyAdminError("--expires is in the past")
        return await self._write("update", key, **changes)
