"""Which turn a compaction or auxiliary call belongs to, when it carries no prompt id.

Claude Code 2.1.332 sends its manual compaction (`/compact`) with
``x-claude-code-request-class: compaction`` and no ``x-claude-code-prompt-id``. Its body is the
conversation plus a summary instruction, so the content hash would make it a turn of its own.
A side call never opens a turn: it belongs to the session's latest prompt, which this table
remembers (per gateway process, bounded like the subagent links). A side call whose session's
prompt this process never saw keeps the content-hash turn.
"""

from __future__ import annotations

from dataclasses import replace

from sluice.telemetry.ttl_lru import TtlLru
from sluice.telemetry.turns import SIDE_CLASSES, Hints


class SessionPrompts:
    __slots__ = ("_latest",)

    def __init__(self, *, max_entries: int = 10_000, ttl_s: float = 3600.0) -> None:
        self._latest: TtlLru[str, str] = TtlLru(max_entries, ttl_s)

    def __len__(self) -> int:
        return len(self._latest)

    def fill(self, session: str, hints: Hints, now: float) -> Hints:
        """``hints``, with the session's latest prompt id given to a side call that has none;
        a main call's prompt id is remembered as the session's latest."""
        if hints.prompt_id is not None:
            if hints.request_class not in SIDE_CLASSES and hints.agent_id is None:
                self._latest.put(session, hints.prompt_id, now)
            return hints
        if hints.request_class not in SIDE_CLASSES:
            return hints
        latest = self._latest.get(session, now)
        return hints if latest is None else replace(hints, prompt_id=latest)
