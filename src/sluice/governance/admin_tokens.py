"""Admin API tokens: minting, checking, revoking.

A token is ``sl_adm_<26-char ULID><secret>``; the ULID is its id, so checking one is a
primary-key read and a constant-time compare of HMAC-SHA256(server secret, token), exactly as
virtual keys are checked. The token itself is shown once and never stored or logged.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from sluice.base.clock import Clock
from sluice.governance import vk_format
from sluice.store.admin_tokens_repo import AdminTokensRepo, TokenRow
from sluice.store.audit_repo import AuditEntry

PREFIX = "sl_adm_"
ROLES = ("admin", "viewer")
TOUCH_EVERY_MS = 60_000  # last_used_at is written at most this often per token
_ALPHABET = string.ascii_letters + string.digits
_SHAPE = re.compile(r"sl_adm_([0-9A-HJKMNP-TV-Z]{26})[A-Za-z0-9]{32}")


class TokenError(Exception):
    """A refused token action, with a message fit for the terminal."""


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    """Who is calling the admin API."""

    token_id: str
    name: str
    role: str
    project: str | None

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class MintedToken:
    row: TokenRow
    token: str  # shown once, never stored


def public(row: TokenRow, now_ms: int) -> dict[str, Any]:
    """Everything about a token except its hash."""
    data = dataclasses.asdict(row)
    data.pop("token_hash")
    expired = row.expires_at is not None and row.expires_at <= now_ms
    data["status"] = "revoked" if row.revoked_at else "expired" if expired else "active"
    return data


class TokenAdmin:
    def __init__(self, repo: AdminTokensRepo, server_secret: bytes, clock: Clock) -> None:
        self._repo = repo
        self._secret = server_secret
        self._clock = clock

    async def create(
        self, name: str, role: str, project: str | None = None, expires_at: int | None = None
    ) -> MintedToken:
        if role not in ROLES:
            raise TokenError(f"role must be one of {', '.join(ROLES)}")
        now = self._clock.now_ms()
        if expires_at is not None and expires_at <= now:
            raise TokenError("--expires is in the past")
        token_id = vk_format.new_key_id()
        secret = "".join(secrets.choice(_ALPHABET) for _ in range(32))
        token = f"{PREFIX}{token_id}{secret}"
        row = TokenRow(
            id=token_id,
            name=name,
            role=role,
            project=project,
            token_hash=vk_format.hash_key(self._secret, token),
            created_at=now,
            expires_at=expires_at,
        )
        entry = AuditEntry(
            "cli", "tokens.create", "admin_token", token_id, project, None, public(row, now), at=now
        )
        await self._repo.insert(row, entry)
        return MintedToken(row, token)

    async def list_all(self) -> list[TokenRow]:
        return await self._repo.list_all()

    async def revoke(self, token_id: str) -> TokenRow:
        row = await self._repo.get(token_id)
        if row is None:
            raise TokenError(f"no admin token with id {token_id!r}")
        if row.revoked_at is not None:
            return row
        now = self._clock.now_ms()
        revoked = dataclasses.replace(row, revoked_at=now)
        entry = AuditEntry(
            "cli",
            "tokens.revoke",
            "admin_token",
            row.id,
            row.project,
            public(row, now),
            public(revoked, now),
            at=now,
        )
        await self._repo.revoke(row.id, now, entry)
        return revoked

    async def authenticate(self, presented: str) -> AdminIdentity | None:
        """The identity behind a token, or None: malformed, unknown, wrong secret, expired or
        revoked all look the same to the caller."""
        match = _SHAPE.fullmatch(presented)
        if match is None:
            return None
        row = await self._repo.get(match.group(1))
        if row is None:
            return None
        if not vk_format.hashes_match(row.token_hash, vk_format.hash_key(self._secret, presented)):
            return None
        now = self._clock.now_ms()
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
            return None
        if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY_MS:
            await self._repo.touch(row.id, now)
        return AdminIdentity(row.id, row.name, row.role, row.project)
