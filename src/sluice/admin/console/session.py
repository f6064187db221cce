"""Console sessions: a signed cookie naming an admin token, and a CSRF token per session.

The cookie holds ``v1.<token id>.<expires ms>.<nonce>.<signature>``: never the token itself.
Each request reloads the token row, so revoking or expiring the token ends its sessions at
once, on every replica (nothing is kept in memory: any replica can check any cookie). The CSRF
token is an HMAC of the session's nonce, so it is per session and needs no storage; every form
post and every cookie-authenticated API mutation must carry it (SameSite=Strict is the first
line, this the second).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import Response

from sluice.admin.state import AdminState
from sluice.governance.admin_tokens import AdminIdentity
from sluice.store.admin_tokens_repo import AdminTokensRepo

COOKIE = "sluice_console"
CSRF_HEADER = "x-csrf-token"
SESSION_MS = 8 * 3600 * 1000  # a working day; the token's own expiry still applies
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Session:
    who: AdminIdentity
    csrf: str


def _key(secret: bytes) -> bytes:
    # Derived, so a session signature can never be replayed as any other HMAC of the secret.
    return hmac.new(secret, b"sluice console session v1", hashlib.sha256).digest()


def _sign(secret: bytes, payload: str) -> str:
    digest = hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_of(secret: bytes, nonce: str) -> str:
    return _sign(secret, f"csrf.{nonce}")


def cookie_value(state: AdminState, token_id: str) -> str:
    expires = state.clock.now_ms() + SESSION_MS
    payload = f"v1.{token_id}.{expires}.{secrets.token_urlsafe(18)}"
    return f"{payload}.{_sign(state.secret, payload)}"


def set_cookie(response: Response, value: str, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_MS // 1000,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


async def session_of(state: AdminState, conn: HTTPConnection) -> Session | None:
    """The signed-in session behind the request's cookie, or None (absent, forged, expired,
    or its token revoked or expired)."""
    value = conn.cookies.get(COOKIE)
    if not value:
        return None
    payload, _, signature = value.rpartition(".")
    parts = payload.split(".")
    if len(parts) != 4 or parts[0] != "v1" or not parts[2].isdigit():
        return None
    if not hmac.compare_digest(signature, _sign(state.secret, payload)):
        return None
    now = state.clock.now_ms()
    if int(parts[2]) <= now:
        return None
    row = await AdminTokensRepo(state.engine).get(parts[1])
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    who = AdminIdentity(row.id, f"{row.name} (console)", row.role, row.project)
    return Session(who, csrf_of(state.secret, parts[3]))


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented, session.csrf)
