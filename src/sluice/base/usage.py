"""Token usage as Anthropic reports it, accumulated the way the official SDKs do."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True)
class Usage:
    """``input_tokens`` excludes cached tokens, as on Anthropic's wire."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_5m_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    seen: bool = False

    def apply(self, usage: Any) -> None:
        """Overwrite with every field present. ``message_delta.usage`` holds cumulative totals
        for the whole message, so values replace earlier ones and are never added. Only an
        ``int`` counts (``type(v) is int``, inline on every response: not a bool)."""
        if not isinstance(usage, dict):
            return
        self.seen = True
        if type(v := usage.get("input_tokens")) is int:
            self.input_tokens = v
        if type(v := usage.get("output_tokens")) is int:
            self.output_tokens = v
        if type(v := usage.get("cache_read_input_tokens")) is int:
            self.cache_read_tokens = v
        if type(v := usage.get("cache_creation_input_tokens")) is int:
            self.cache_creation_tokens = v
        split = usage.get("cache_creation")
        if isinstance(split, dict):
            if type(v := split.get("ephemeral_5m_input_tokens")) is int:
                self.cache_creation_5m_tokens = v
            if type(v := split.get("ephemeral_1h_input_tokens")) is int:
                self.cache_creation_1h_tokens = v

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens


# Tools whose input the gateway keeps from the response (a copy, bounded): Claude Code's
# subagent launches, so traces can name a subagent and tie it to its turn without hints.
INPUT_KEPT_TOOLS = frozenset({"Task", "Agent"})
MAX_KEPT_INPUT = 65_536  # bytes of one kept input; a longer one is not kept


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    block_type: str  # tool_use | server_tool_use
    at: float = 0.0  # monotonic seconds when its block started (the execute_tool span's start)
    input: bytes | None = None  # the input's JSON, for ``INPUT_KEPT_TOOLS`` only


@dataclass(slots=True)
class ResponseFacts:
    """What the gateway learnt from a (copy of the) response, streamed or not."""

    usage: Usage
    response_id: str | None = None
    response_model: str | None = None
    stop_reason: str | None = None
    tool_calls: list[ToolCall] | None = None
    stream_error_type: str | None = None
    first_token_at: float | None = None  # monotonic seconds
    events: int = 0

    @classmethod
    def empty(cls) -> ResponseFacts:
        return cls(Usage())

    def add_tool_call(self, block: dict[str, Any]) -> ToolCall | None:
        kind = block.get("type")
        if kind not in ("tool_use", "server_tool_use"):
            return None
        if self.tool_calls is None:
            self.tool_calls = []
        call = ToolCall(
            str(block.get("id", "")),
            str(block.get("name", "")),
            str(kind),
            time.perf_counter(),
        )
        self.tool_calls.append(call)
        return call

    def apply_message(self, message: Any) -> None:
        """From a non-streaming Message body, or ``message_start.message``."""
        if not isinstance(message, dict):
            return
        if isinstance(message.get("id"), str):
            self.response_id = message["id"]
        if isinstance(message.get("model"), str):
            self.response_model = message["model"]
        if isinstance(message.get("stop_reason"), str):
            self.stop_reason = message["stop_reason"]
        self.usage.apply(message.get("usage"))
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict):
                    call = self.add_tool_call(block)
                    if call is not None and call.name in INPUT_KEPT_TOOLS:
                        call.input = _kept_input(block.get("input"))


def _kept_input(value: Any) -> bytes | None:
    try:
        kept = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested past orjson's limit: not a real launch
        return None
    return kept if len(kept) <= MAX_KEPT_INPUT else None
