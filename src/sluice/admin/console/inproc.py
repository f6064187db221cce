"""Calls the admin API in-process, as the signed-in user: one ASGI call, no socket.

The console goes through the API rather than around it, so roles, project scoping, validation,
the audit log and "in force on every replica" are the API's, written once. The session cookie
and its CSRF token are passed on; the API checks them as for any browser call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.types import Message

from sluice.admin.console.session import COOKIE, CSRF_HEADER


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        """The API's error message (``{"error": {"message"}}``), for showing in place."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("message", "error"))
        return f"HTTP {self.status}"

    @property
    def problems(self) -> list[dict[str, str]]:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return list(self.body["error"].get("problems", []))
        return []


def _scope(request: Request, method: str, path: str, query: str, body: bytes) -> dict[str, Any]:
    headers = [(b"cookie", f"{COOKIE}={request.cookies.get(COOKIE, '')}".encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": ("console", 0),
    }


async def call(
    request: Request,
    method: str,
    path: str,
    *,
    csrf: str | None = None,
    json: Any = None,
    query: dict[str, Any] | None = None,
) -> Answer:
    """``path`` under ``/api/v1``; empty query values are dropped."""
    body = orjson.dumps(json) if json is not None else b""
    wanted = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    scope = _scope(request, method, "/api/v1" + path, urlencode(wanted), body)
    if csrf is not None:
        scope["headers"].append((CSRF_HEADER.encode(), csrf.encode()))
    sent = False
    status = 500
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app(scope, receive, send)
    raw = b"".join(chunks)
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = raw.decode(errors="replace")
    return Answer(status, parsed)
