"""Reply scripts, faults and named scenarios for the fake upstreams.

Pure data: nothing here does IO. The replies and their renderers (a ``Reply`` as the exact
SSE events or ``Message`` JSON) live in ``sluice.translate.canned``, shared with the demo
provider; they are re-exported here, where the fakes and tests have always found them.
"""

from __future__ import annotations

import http
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.translate.canned import (
    Block,
    Reply,
    ReplyUsage,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    error_body,
    error_type_for_status,
    message_json,
    sse_event,
    stream_events,
)

__all__ = [
    "SCENARIO_HELP",
    "SCENARIO_NAMES",
    "Block",
    "FakeUsage",
    "Fault",
    "Reply",
    "Scenario",
    "TextBlock",
    "ThinkingBlock",
    "ToolUseBlock",
    "error_body",
    "error_type_for_status",
    "message_json",
    "scenario_by_name",
    "sse_event",
    "stream_events",
    "tool_rounds_this_turn",
]

JSON = dict[str, Any]
FakeUsage = ReplyUsage  # the fakes' name for it

_NGINX_PAGE = (
    "<html>\r\n<head><title>{s} {r}</title></head>\r\n<body>\r\n"
    "<center><h1>{s} {r}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Fault:
    """What goes wrong with one response. See the module docstring of fake_anthropic."""

    status: int | None = None
    body: bytes | None = None  # None with status set: an Anthropic JSON error for that status
    content_type: str = "application/json"
    retry_after: str | None = None
    should_retry: str | None = None
    first_byte_delay: float = 0.0
    event_delay: float = 0.0
    drop_after_events: int | None = None
    error_after_events: int | None = None
    error_type: str = "overloaded_error"
    error_message: str = "Overloaded"
    hang_before_headers: bool = False
    hang_after_events: int | None = None

    @classmethod
    def html(cls, status: int) -> Fault:
        """An error page from a proxy in front of the API (nginx style, text/html)."""
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        body = _NGINX_PAGE.format(s=status, r=reason).encode()
        return cls(status=status, body=body, content_type="text/html")

    @classmethod
    def json_error(
        cls, status: int, error_type: str, message: str, *, request_id: str = "req_fake_error"
    ) -> Fault:
        """An HTTP error with a custom Anthropic error type and message (e.g. a policy denial)."""
        body = error_body(status, request_id, error_type=error_type, message=message)
        return cls(status=status, body=body)


@dataclass(frozen=True)
class Scenario:
    reply: Reply = field(default_factory=Reply)
    fault: Fault | None = None
    # Tool scenarios: once this turn carries `tool_rounds` tool_result messages, answer with
    # `after_tools` instead, so a client's agent loop ends (None: always `reply`).
    after_tools: Reply | None = None
    tool_rounds: int = 1
    # A fault for the first attempt at each distinct request body; a retry of it succeeds.
    first_attempt_fault: Fault | None = None
    # (needle, reply): a request whose last user message contains the needle gets that reply,
    # whatever the order (a subagent's request, a background task's notification), first match.
    routes: tuple[tuple[str, Reply], ...] = ()

    def reply_for(self, payload: JSON) -> Reply:
        """The reply for this request body (the tool loop's answer depends on it)."""
        if self.routes and (routed := _routed(self.routes, payload)) is not None:
            return routed
        if self.after_tools is not None and tool_rounds_this_turn(payload) >= self.tool_rounds:
            return self.after_tools
        return self.reply


def _routed(routes: tuple[tuple[str, Reply], ...], payload: JSON) -> Reply | None:
    messages = payload.get("messages")
    messages = messages if isinstance(messages, list) else []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    last = orjson.dumps(users[-1].get("content")).decode()
    return next((reply for needle, reply in routes if needle in last), None)


def tool_rounds_this_turn(payload: JSON) -> int:
    """How many user messages at the end of the conversation carry tool results: the tool
    rounds of the current turn (an earlier turn's rounds end at a plain user message)."""
    messages = payload.get("messages")
    rounds = 0
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks):
            break
        rounds += 1
    return rounds


# The named scenarios live in their own module; re-exported here for existing imports.
from sluice.testing.named import SCENARIO_HELP, SCENARIO_NAMES, scenario_by_name  # noqa: E402
