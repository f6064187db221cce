"""Bearer admin tokens: who is calling, and whether their role and project allow it.

The console's session cookie (admin/console/session.py) is accepted instead of a bearer token,
with its CSRF token on every mutation. No, malformed, unknown, expired or revoked token: 401,
all alike. A viewer asking to change something: 403. A project-scoped token asking for
another project's object: 404, as if it did not exist, so ids of other projects cannot be
probed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sluice.admin.console.session import COOKIE, CSRF_HEADER, UNSAFE, csrf_ok, session_of
from sluice.admin.errors import ApiError
from sluice.admin.state import state_of
from sluice.governance.admin_tokens import AdminIdentity


async def _console(request: Request) -> AdminIdentity:
    """The console's session cookie stands for a token; a mutation needs its CSRF token too."""
    session = await session_of(state_of(request), request)
    if session is None:
        raise ApiError(401, "the console session has ended: sign in again")
    if request.method in UNSAFE and not csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, f"a console request that changes something needs {CSRF_HEADER}")
    return session.who


async def reader(request: Request) -> AdminIdentity:
    header = request.headers.get("authorization", "")
    if not header and COOKIE in request.cookies:
        return await _console(request)
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "an admin token is required: Authorization: Bearer <token>")
    who = await state_of(request).tokens.authenticate(presented.strip())
    if who is None:
        raise ApiError(401, "the admin token is not valid (unknown, expired or revoked)")
    return who


async def writer(who: Annotated[AdminIdentity, Depends(reader)]) -> AdminIdentity:
    if not who.can_write:
        raise ApiError(403, f"token {who.name!r} has the viewer role: it may only read")
    return who


Reader = Annotated[AdminIdentity, Depends(reader)]
Writer = Annotated[AdminIdentity, Depends(writer)]


def visible(who: AdminIdentity, project: str | None) -> bool:
    """Whether an object of ``project`` exists for this token."""
    return who.project is None or who.project == project


def may_place_in(who: AdminIdentity, project: str | None) -> None:
    """A project-scoped token may create or move objects only into its own project."""
    if who.project is not None and project != who.project:
        raise ApiError(403, f"token {who.name!r} may only manage project {who.project!r}")
