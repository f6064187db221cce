"""The one place policy patterns are compiled: RE2, so matching time is linear in the input.

Python's ``re`` backtracks: ``(a+)+$`` against 25 ``a`` and a ``!`` held the event loop for
seconds. RE2 has no backtracking, so it refuses what needs it (backreferences, lookaround);
such a pattern is refused when the key config is saved, with the pattern and the reason.
The strings matched are capped too (``MAX_MATCHED_CHARS``): RE2 is linear, but a 1 MB tool
name should not be scanned by every pattern of a key.
"""

from __future__ import annotations

from typing import Protocol

import re2

# Longest value each policy dimension judges. Longer values are refused while that dimension
# has rules: a model or tool name is an identifier (Anthropic caps tool names at 64
# characters), a URL may carry a long query.
MAX_MATCHED_CHARS = {"tools": 256, "mcp": 256, "models": 256, "urls": 2048}


class Pattern(Protocol):
    pattern: str

    def search(self, text: str) -> object | None: ...


class PatternError(ValueError):
    """RE2 cannot compile the pattern."""


def compile_pattern(pattern: str) -> Pattern:
    options = re2.Options()
    options.log_errors = False  # else RE2 writes every refusal to stderr
    try:
        compiled: Pattern = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(
            f"invalid regular expression {pattern!r}: {reason} (patterns use RE2 syntax: "
            "no backreferences or lookaround)"
        ) from exc
    return compiled
