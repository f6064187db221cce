"""Which headers cross the gateway, in each direction."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime

# Never forwarded upstream: the client's credentials (the provider's replace them), hop-by-hop
# headers, and what the HTTP client sets itself.
_DROP_UPSTREAM = frozenset(
    {
        b"authorization",
        b"x-api-key",
        b"x-goog-api-key",
        b"api-key",
        b"cookie",
        b"host",
        b"content-length",
        b"accept-encoding",
        b"connection",
        b"keep-alive",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    }
)

# Never relayed back: framing the server redoes, cookies of the provider's domain, and the
# upstream request id (returned as ``upstream-request-id``; ``request-id`` is ours).
_DROP_DOWNSTREAM = frozenset(
    {
        b"content-length",
        b"content-encoding",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"date",
        b"server",
        b"set-cookie",
        b"request-id",
        b"x-request-id",
        b"trailer",
        b"upgrade",
    }
)


def upstream_headers(client_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Forward end-to-end headers as sent (anthropic-version, anthropic-beta, user-agent, x-app,
    x-claude-code-session-id, x-stainless-*, ...), minus credentials and hop-by-hop ones.
    Gateway control headers (``x-langwatch-*``) stay at the gateway."""
    out: dict[str, str] = {}
    for raw_name, raw_value in client_headers:
        name = raw_name.lower()
        if name in _DROP_UPSTREAM or name.startswith(b"x-langwatch-"):
            continue
        key = name.decode("latin-1")
        value = raw_value.decode("latin-1")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def retry_after_seconds(value: str, now: float | None = None) -> str | None:
    """``retry-after`` as Claude Code reads it: integer seconds. An HTTP date becomes the
    seconds until it (never negative), a fraction is rounded up; anything else is dropped."""
    value = value.strip()
    if value.isdigit():
        return value
    try:
        return str(max(0, math.ceil(float(value))))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return str(max(0, math.ceil(when - (time.time() if now is None else now))))


def downstream_headers(upstream: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """End-to-end response headers as the upstream sent them (``x-should-retry`` and
    ``anthropic-ratelimit-unified-*`` untouched), with ``retry-after`` in integer seconds.
    Raw pairs (aiohttp's ``raw_headers``): no decoding and re-encoding of every header."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in upstream:
        lname = name.lower()
        if lname in _DROP_DOWNSTREAM:
            continue
        if lname == b"retry-after":
            seconds = retry_after_seconds(value.decode("latin-1"))
            if seconds is None:
                continue
            value = seconds.encode("ascii")
        out.append((lname, value))
    return out
