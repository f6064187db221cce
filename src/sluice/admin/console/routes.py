"""The console's routes on the admin app: sign-in (token or one-time link), sign-out, pages
and static files. ``install`` is all ``create_admin_app`` calls."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from sluice.admin.console import (
    pages_budgets,
    pages_keys,
    pages_more,
    pages_providers,
    pages_spend,
    signin_link,
)
from sluice.admin.console.common import (
    HEADERS,
    CsrfRefused,
    SignInNeeded,
    form,
    make_state,
    page,
    redirect,
)
from sluice.admin.console.session import clear_cookie, cookie_value, session_of, set_cookie
from sluice.admin.state import CircuitsSource, state_of
from sluice.config.models import SluiceConfig

router = APIRouter()


@router.get("/")
async def home(request: Request) -> Response:
    signed = await session_of(state_of(request), request)
    return redirect("/keys" if signed is not None else "/signin")


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    return page(request, "signin.html", None)


def _signed_in_as(request: Request, token_id: str) -> Response:
    response = redirect("/keys")
    set_cookie(response, cookie_value(state_of(request), token_id), request.url.scheme == "https")
    return response


def _same_origin(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin in (None, "null") or origin == f"{request.url.scheme}://{request.url.netloc}"


@router.post("/signin")
async def signin(request: Request) -> Response:
    # No session yet, so no CSRF token: the browser's Sec-Fetch-Site and Origin stand in (a
    # forged sign-in could only sign the victim in as the attacker's own token). Origin is
    # "null" under our no-referrer policy, so Sec-Fetch-Site is the one that decides there.
    if not _same_origin(request):
        return page(request, "signin.html", None, 403, error="cross-site sign-in refused")
    token = (await form(request, None)).get("token", "").strip()
    who = await state_of(request).tokens.authenticate(token)
    if who is None or who.name == signin_link.LINK_NAME:
        return page(
            request, "signin.html", None, 401,
            error="That token is not valid (unknown, expired or revoked).",
        )  # fmt: skip
    return _signed_in_as(request, who.token_id)


@router.get("/signin/{link}")
async def signin_by_link(link: str, request: Request) -> Response:
    token_id = await signin_link.consume(state_of(request), link)
    if token_id is None:
        message = "This sign-in link is not valid: it was used already, or it expired."
        return page(request, "signin.html", None, 401, error=message)
    return _signed_in_as(request, token_id)  # the redirect drops the link from the address bar


@router.post("/signout")
async def signout(request: Request) -> Response:
    session = await session_of(state_of(request), request)
    await form(request, session)
    response = redirect("/signin")
    clear_cookie(response)
    return response


async def _sign_in_needed(request: Request, _exc: Exception) -> Response:
    return redirect("/signin")


async def _csrf_refused(request: Request, _exc: Exception) -> Response:
    return page(
        request, "error.html", None, 403,
        message="This form is out of date (its security token did not match). Reload the page "
        "and try again.",
    )  # fmt: skip


def _default_gateway_url(config: SluiceConfig) -> Callable[[], str]:
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    url = f"http://{host}:{config.server.port}"
    return lambda: url


def install(
    app: FastAPI,
    config: SluiceConfig,
    circuits: CircuitsSource | None = None,
    gateway_url: Callable[[], str] | None = None,
) -> None:
    app.state.console = make_state(
        config, circuits or (lambda: None), gateway_url or _default_gateway_url(config)
    )
    app.add_exception_handler(SignInNeeded, _sign_in_needed)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    static = StaticFiles(directory=str(files("sluice.admin.console") / "static"))
    app.mount("/static", static, name="console-static")
    for module in (pages_keys, pages_budgets, pages_spend, pages_providers, pages_more):
        app.include_router(module.router, include_in_schema=False)
    app.include_router(router, include_in_schema=False)


__all__ = ["HEADERS", "install"]
