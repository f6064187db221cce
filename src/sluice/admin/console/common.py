"""What every console page shares: templates, the signed-in session, forms and CSRF."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sluice.admin.console.session import Session, csrf_ok, session_of
from sluice.admin.state import CircuitsSource, state_of
from sluice.config.models import SluiceConfig

# Provider id -> breaker snapshot, when the gateway runs in this process; None elsewhere.
MAX_FORM_BYTES = 256 * 1024
HEADERS = MappingProxyType(
    {
        # Everything is served from here: no CDN, no inline script, no framing.
        "content-security-policy": "default-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        "referrer-policy": "no-referrer",  # a sign-in link must not leak in a Referer
        "x-content-type-options": "nosniff",
        "cache-control": "no-store",
    }
)


@dataclass(frozen=True)
class ConsoleState:
    templates: Environment
    config: SluiceConfig
    circuits: CircuitsSource
    gateway_url: Callable[[], str]  # for the export lines a minted key comes with


def make_state(
    config: SluiceConfig, circuits: CircuitsSource, gateway_url: Callable[[], str]
) -> ConsoleState:
    env = Environment(
        loader=PackageLoader("sluice.admin.console", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["usd"] = lambda v: "—" if v is None else f"${float(v):,.4f}"
    env.filters["num"] = lambda v: "—" if v is None else f"{int(v):,}"
    env.filters["when"] = _when
    return ConsoleState(env, config, circuits, gateway_url)


def _when(ms: int | None) -> str:
    if ms is None:
        return "—"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def console_of(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


class SignInNeeded(Exception):
    """No valid session: the handler installed in routes.py redirects to /signin."""


class CsrfRefused(Exception):
    """A form post without the session's CSRF token."""


async def signed_in(request: Request) -> Session:
    session = await session_of(state_of(request), request)
    if session is None:
        raise SignInNeeded
    return session


async def form(request: Request, session: Session | None) -> dict[str, str]:
    """The url-encoded form (parsed here: no multipart dependency), its CSRF token checked."""
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise CsrfRefused  # nothing the console posts is this large
    fields = dict(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
    if session is not None and not csrf_ok(session, fields.get("csrf")):
        raise CsrfRefused
    return fields


def page(
    request: Request, template: str, session: Session | None, status: int = 200, **ctx: Any
) -> HTMLResponse:
    env = console_of(request).templates
    html = env.get_template(template).render(
        request=request, session=session, path=request.url.path, **ctx
    )
    return HTMLResponse(html, status, headers=HEADERS)


def redirect(to: str) -> Response:
    return RedirectResponse(to, status_code=303, headers=HEADERS)
