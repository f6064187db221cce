"""Tool policy on the response: enforce on the model's *call*, not on what a client declares.

Claude Code declares Bash, Read, Edit and the rest on every request, so the request goes
upstream unchanged (the prompt cache stays warm) and the guard watches the answer. A denied
``tool_use`` (or ``server_tool_use``) block is withheld with everything after it, and the
stream ends with a ``tool_not_allowed`` error frame. A non-streaming answer that calls a denied
tool is replaced by a 403.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.errors import ToolNotAllowed
from sluice.governance.policy import KeyPolicy
from sluice.streaming.sse import SseEvent

_TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use"})


class ToolGuard:
    __slots__ = ("_policy", "violation")

    def __init__(self, policy: KeyPolicy) -> None:
        self._policy = policy
        self.violation: ToolNotAllowed | None = None

    def _check_block(self, block: Any) -> ToolNotAllowed | None:
        if not isinstance(block, dict) or block.get("type") not in _TOOL_BLOCKS:
            return None
        name = block.get("name")
        if not isinstance(name, str):
            return None
        reason = self._policy.tool_violation(name)
        if reason is None:
            return None
        self.violation = self._policy.tool_error(name, reason)
        return self.violation

    def on_event(self, event: SseEvent) -> ToolNotAllowed | None:
        if event.name != b"content_block_start" or b"tool_use" not in event.data:
            return None
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return None
        return self._check_block(
            payload.get("content_block") if isinstance(payload, dict) else None
        )

    def check_message(self, message: Any) -> ToolNotAllowed | None:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for block in content:
                verdict = self._check_block(block)
                if verdict is not None:
                    return verdict
        return None
