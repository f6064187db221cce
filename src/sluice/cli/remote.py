"""The CLI against the admin API: with ``SLUICE_ADMIN_URL`` and ``SLUICE_ADMIN_TOKEN`` (or
``--url``/``--token`` on a command group) a command calls ``/api/v1`` instead of opening the
database, so an admin's machine needs neither a config file nor database credentials.

Each command group takes the two options in its callback and sets the :class:`Remote` for
this invocation; a command asks :func:`current` once and goes local or remote from there.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import typer

from sluice.cli.common import fail

URL_ENV = "SLUICE_ADMIN_URL"
TOKEN_ENV = "SLUICE_ADMIN_TOKEN"  # noqa: S105 (the variable's name)
UrlOption = typer.Option(
    None, "--url", envvar=URL_ENV, help="The admin API (e.g. http://host:4001): work remotely."
)
TokenOption = typer.Option(
    None, "--token", envvar=TOKEN_ENV, help="An admin token for --url.", show_default=False
)
# Set by a group's callback for this one invocation (typer runs it just before the command).
_TARGET: ContextVar[Remote | None] = ContextVar("sluice_remote", default=None)
_TIMEOUT_S = 60.0  # a mutation returns once every gateway applied it: allow for that wait


@dataclass(frozen=True)
class Remote:
    url: str
    token: str

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """The JSON answer; an API error prints its message and exits 1 (as local failures do)."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        try:
            status, payload = asyncio.run(self._send(method, path, body, query))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            fail(f"could not reach the admin API at {self.url}: {type(exc).__name__}: {exc}")
        if status >= 400:
            fail(f"{_message(payload, status)} (HTTP {status})")
        return payload

    async def _send(
        self, method: str, path: str, body: Any, query: dict[str, str]
    ) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {self.token}", "accept": "application/json"}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["content-type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                method, f"{self.url}/api/v1{path}", data=data, params=query, headers=headers
            ) as response,
        ):
            raw = await response.read()
        try:
            return response.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return response.status, raw.decode("utf-8", "replace")


def _message(payload: Any, status: int) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        problems = error.get("problems") or []
        extra = "; ".join(f"{p.get('path')}: {p.get('message')}" for p in problems)
        message = str(error.get("message", ""))
        return f"{message} ({extra})" if extra and extra not in message else message
    return str(payload or f"HTTP {status}")


def segment(value: str) -> str:
    return quote(value, safe="")


def remember(url: str | None, token: str | None) -> Remote | None:
    """A group callback's work: keep the remote target (or none) for its commands."""
    if url is None and token is None:
        _TARGET.set(None)
        return None
    if not url or not token:
        missing = "--token (or SLUICE_ADMIN_TOKEN)" if url else "--url (or SLUICE_ADMIN_URL)"
        fail(f"working remotely needs {missing} as well")
    remote = Remote(url.rstrip("/"), token)
    _TARGET.set(remote)
    return remote


def current() -> Remote | None:
    return _TARGET.get()


def resolve(remote: Remote, kind: str, ident: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """``keys``/``budgets`` by id, else (like the local commands) by a unique prefix or name."""
    rows: list[dict[str, Any]] = remote.call("GET", f"/{kind}")["data"]
    for row in rows:
        if row["id"] == ident:
            return row
    matches = [r for r in rows if any(r.get(f) == ident for f in fields)]
    if len(matches) > 1:
        fail(f"{ident!r} matches {len(matches)} {kind}; use the id")
    if not matches:
        fail(f"no {kind[:-1]} matches {ident!r}")
    return matches[0]
