"""What tracing reads from a request's headers: the session, the agent, an incoming W3C
``traceparent`` and Claude Code's tool-duration hint. Pure; every value is the client's, so
each is bounded or validated here.
"""

from __future__ import annotations

from sluice.base.text import MAX_IDENTIFIER_CHARS

_MAX_DURATIONS = 64


def parse_tool_durations(value: bytes | None) -> tuple[tuple[str, int], ...]:
    """``Bash=41,Read=3`` -> (("Bash", 41), ("Read", 3)); malformed entries are skipped and
    the list is bounded (it comes from the client)."""
    if not value:
        return ()
    found: list[tuple[str, int]] = []
    for part in value.decode("latin-1").split(",")[:_MAX_DURATIONS]:
        name, _, ms = part.strip().partition("=")
        if name and ms.isdigit() and len(name) <= 200:
            found.append((name, int(ms)))
    return tuple(found)


def session_of(peeked: str | None, headers: dict[bytes, bytes]) -> str | None:
    """``X-Claude-Code-Session-Id`` or ``metadata.user_id``'s session (peeked on the request
    path), then other clients' session headers."""
    if peeked:
        return peeked
    for name in (b"x-session-affinity", b"session-id"):
        value = headers.get(name)
        if value:
            return value[:MAX_IDENTIFIER_CHARS].decode("latin-1")  # as the peek cuts its own
    return None


def agent_name(headers: dict[bytes, bytes]) -> str:
    explicit = headers.get(b"x-langwatch-agent")
    if explicit:
        return explicit.decode("latin-1").strip() or "unknown"
    if headers.get(b"user-agent", b"").startswith(b"claude-cli/"):
        return "claude-code"
    return "unknown"


def parse_traceparent(value: bytes | None) -> tuple[int, int] | None:
    """W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``) -> (trace id, span id)."""
    if not value:
        return None
    parts = value.decode("latin-1").strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or parts[0] == "ff":
        return None
    try:
        trace, span = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return (trace, span) if trace and span else None
