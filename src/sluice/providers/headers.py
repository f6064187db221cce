"""Which headers cross the gateway, in each direction."""

from __future__ import annotations

from collections.abc import Iterable

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
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "date",
        "server",
        "set-cookie",
        "request-id",
        "x-request-id",
        "trailer",
        "upgrade",
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


def downstream_headers(upstream: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in upstream
        if name.lower() not in _DROP_DOWNSTREAM
    ]
