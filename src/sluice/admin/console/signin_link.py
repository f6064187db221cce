"""The one-time sign-in link that ``sluice serve`` prints on first start.

The link carries an admin token of its own, named ``LINK_NAME``, valid ``LINK_TTL_MS``: like
every admin token only its HMAC is stored, and its expiry is the token's. Using it revokes it
(a conditional update, so of two racing uses one wins) and mints the session's own admin token,
so the session outlives the link's 15 minutes and shows in ``sluice admin list-tokens``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.admin.console.session import SESSION_MS
from sluice.admin.state import AdminState
from sluice.base.clock import Clock
from sluice.governance.admin_tokens import TokenAdmin
from sluice.store.admin_tokens_repo import AdminTokensRepo

LINK_NAME = "console sign-in link"
SESSION_NAME = "console (signed in by link)"
LINK_TTL_MS = 15 * 60 * 1000


async def issue_if_first_start(engine: AsyncEngine, secret: bytes, clock: Clock) -> str | None:
    """A fresh link token when no usable admin token exists (links aside), else None."""
    repo = AdminTokensRepo(engine)
    now = clock.now_ms()
    for row in await repo.list_all():
        usable = row.revoked_at is None and (row.expires_at is None or row.expires_at > now)
        if usable and row.name != LINK_NAME:
            return None
    minted = await TokenAdmin(repo, secret, clock).create(
        LINK_NAME, "admin", expires_at=now + LINK_TTL_MS
    )
    return minted.token


async def consume(state: AdminState, presented: str) -> str | None:
    """The id of a new session token for a valid, unused, unexpired link; else None."""
    who = await state.tokens.authenticate(presented)
    if who is None or who.name != LINK_NAME:
        return None
    now = state.clock.now_ms()
    if not await AdminTokensRepo(state.engine).revoke_if_active(who.token_id, now):
        return None
    minted = await state.tokens.create(SESSION_NAME, "admin", expires_at=now + SESSION_MS)
    return minted.row.id
