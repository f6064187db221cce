"""How `sluice serve` configures uvicorn: the gateway app is served as it is, with no
per-request wrapper it does not need."""

from __future__ import annotations

from typing import Any

import uvicorn

from sluice.cli.main import _uvicorn_options
from sluice.config.loader import parse_config


async def _app(scope: Any, receive: Any, send: Any) -> None:
    return None


def test_the_app_is_not_wrapped_for_forwarded_headers() -> None:
    """Nothing in Sluice reads ``scope["client"]`` or the scheme, so uvicorn's proxy-headers
    middleware (a rewrite of both from X-Forwarded-* on every request) stays out."""
    cfg = parse_config('secret_key: s\ndatabase: "sqlite:///:memory:"\n')
    options = _uvicorn_options(cfg, "127.0.0.1", 0)
    config = uvicorn.Config(_app, **options)
    config.load()
    assert config.loaded_app is _app
    assert options["access_log"] is False
