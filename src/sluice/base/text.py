"""Identifiers the gateway stores and repeats back: how long they may be, how they are cut."""

from __future__ import annotations

# Identifiers the gateway stores and echoes (model, session id) are refused (model) or
# truncated (session) past this many characters: the ledger's columns are 200 wide (longer
# values would fail its insert on PostgreSQL), real model ids are under 100.
MAX_IDENTIFIER_CHARS = 200
_ECHO_CHARS = 64  # how much of a refused identifier an error message repeats


def echo(value: str, limit: int = _ECHO_CHARS) -> str:
    """``value`` cut for an error message or a log line."""
    return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"
