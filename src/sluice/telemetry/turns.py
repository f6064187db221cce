"""Turn grouping with no shared state: every replica derives the same trace and span ids.

A *turn* opens at the request whose last user message carries user text; the requests after it
that only bring ``tool_result`` blocks continue it. Claude Code re-sends the whole history, so the
opening message is in every request of the turn, and its position plus a content hash (with the
``cache_control`` markers removed, since Claude Code moves them from request to request) name
the turn. All ids are hashes of that name:

- trace id: the first 16 bytes of ``turn_key`` (or an incoming ``traceparent``'s trace id);
- root ``invoke_agent`` span: ``H(turn_key, "root")``;
- ``chat`` span of a request with n messages: ``H(turn_key, "chat", n)``. A later request finds
  the chat span that asked for a tool from the index of the assistant message holding the
  ``tool_use``: the request that received it had exactly that many messages;
- ``execute_tool`` span: ``H(turn_key, "tool", tool_use_id)``.

With Claude Code's gateway hints (``CLAUDE_CODE_GATEWAY_HINT_HEADERS=1``) the turn is named by
the session and ``x-claude-code-prompt-id`` instead: one id for every request of a user prompt,
whatever the CLI does to the message's shape. Within it, a subagent
(``x-claude-code-agent-id``) gets a span namespace of its own, its root parented to its
parent agent's root, in the same trace; compaction and auxiliary calls
(``x-claude-code-request-class``) are chat spans of the turn that never open one.

Reading the history (which message opened the turn; the few fields of a message it needs; a
conversation's recalled opening, so a long turn is not read whole by every request of it) is
``telemetry.history``. Pure functions only: no IO, no clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import msgspec
import orjson

from sluice.telemetry.history import (
    Message,
    Recall,
    find_opening,
    find_tool_use,
    message_at,
    normalized_content,
)

_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A ``tool_result`` in the request's last message, joined to the ``tool_use`` it answers."""

    tool_use_id: str
    name: str
    is_error: bool
    asked_at_messages: int | None  # message count of the request whose response held the call
    arguments: bytes | None = None  # JSON (content capture only)
    result: bytes | None = None


@dataclass(frozen=True, slots=True)
class Hints:
    """Claude Code's gateway hint headers, when it sends them."""

    prompt_id: str | None = None
    request_class: str | None = None  # main | subagent | workflow | compaction | auxiliary
    agent_id: str | None = None
    parent_agent_id: str | None = None
    # x-claude-code-prev-tool-durations: client-measured ms of the tools run since the last
    # request, by tool name (``Bash=41``).
    tool_durations: tuple[tuple[str, int], ...] = ()


NO_HINTS = Hints()


@dataclass(frozen=True, slots=True)
class ParentLink:
    """Where a subagent's spans go without hints: its parent's turn (``telemetry.subagents``
    finds it)."""

    turn_key: bytes
    trace_id: int
    root_span_id: int
    agent_type: str | None = None  # the tool's ``subagent_type``, once seen


SIDE_CLASSES = frozenset({"compaction", "auxiliary"})  # calls of a turn that never open one


@dataclass(frozen=True)  # no slots: the span ids below are cached in the instance dict
class Turn:
    turn_key: bytes
    trace_id: int
    caller_span_id: int | None  # the root's parent: an incoming traceparent's, a parent agent's
    opens: bool  # this request opens the turn (and so emits its root span)
    opening_index: int
    message_count: int
    tool_results: tuple[ToolResult, ...] = ()
    lane: bytes = b""  # compaction/auxiliary: their chat spans never collide with the turn's
    client_tool_ms: tuple[tuple[str, int], ...] = ()  # the hint's tool durations

    # Hashed on first use, then kept: the span sink names the root in every span of a record
    # and the chat span twice; the gateway, which hands the turn over, mostly needs neither
    # (a subagent's parent link does). Not fields, so not in the hand-over.
    @cached_property
    def root_span_id(self) -> int:
        return span_id(self.turn_key, b"root")

    @cached_property
    def chat_span_id(self) -> int:
        return self.chat_span_for(self.message_count)

    def without_content(self) -> Turn:
        """This turn without its tool calls' arguments and results: what is handed over when
        content is not captured (a tool result can be megabytes the spans never show)."""
        if not any(r.arguments is not None or r.result is not None for r in self.tool_results):
            return self
        bare = tuple(replace(r, arguments=None, result=None) for r in self.tool_results)
        return replace(self, tool_results=bare)

    @property
    def content_size(self) -> int:
        """Bytes of tool-call content this turn keeps alive."""
        return sum(len(r.arguments or b"") + len(r.result or b"") for r in self.tool_results)

    def client_duration_ms(self, tool_name: str) -> int | None:
        """The client-measured duration of this request's ``tool_name`` result, when the hint
        names it once and one result of that name came back (else it is ambiguous)."""
        named = [ms for name, ms in self.client_tool_ms if name == tool_name]
        results = [r for r in self.tool_results if r.name == tool_name]
        return named[0] if len(named) == 1 and len(results) == 1 else None

    def chat_span_for(self, message_count: int) -> int:
        if self.lane:
            return span_id(self.turn_key, b"chat", self.lane, str(message_count).encode())
        return span_id(self.turn_key, b"chat", str(message_count).encode())

    def tool_span_id(self, tool_use_id: str) -> int:
        return span_id(self.turn_key, b"tool", tool_use_id.encode())


def span_id(key: bytes, *parts: bytes) -> int:
    digest = hashlib.blake2b(b"\0".join((key, *parts)), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1  # 0 is the invalid span id


def detect_turn(
    messages_raw: Any,
    session: str | None,
    request_id: str,
    traceparent: tuple[int, int] | None = None,
    hints: Hints = NO_HINTS,
    parent: ParentLink | None = None,
    agent_id: str | None = None,
    recall: Recall | None = None,
) -> Turn:
    """The turn this request belongs to. Without a session every request is its own turn.
    ``messages_raw``: the ``messages`` array as raw JSON, or its elements already split.
    ``parent``: the turn that started this subagent (no hints: ``telemetry.subagents``);
    ``recall``: where this conversation's turn opened last time (the module's notes)."""
    if isinstance(messages_raw, list):  # already split (``RequestContext.message_items``)
        items = messages_raw
    else:
        items = _RAW_LIST.decode(messages_raw) if messages_raw is not None else []
    count = len(items)
    if session is None or not items:
        key = hashlib.blake2b(b"sluice-request\0" + request_id.encode(), digest_size=32).digest()
        return _turn(key, traceparent, opens=True, opening=max(count - 1, 0), count=count)
    if hints.prompt_id:
        return _hinted_turn(items, session, hints, traceparent, recall)
    opening, opened_by, last_user, last_user_index = find_opening(items, recall)
    normalized = normalized_content(opened_by or message_at(items[opening]))
    key = hashlib.blake2b(
        b"\0".join((b"sluice-turn", session.encode(), str(opening).encode(), normalized)),
        digest_size=32,
    ).digest()
    opens = last_user is None or last_user_index == opening
    results = _tool_results(items, opens, last_user, last_user_index)
    if parent is not None:  # a subagent: spans of its own, under its parent's root
        name = agent_id.encode() if agent_id else key  # its conversation, when no agent id
        key = hashlib.blake2b(parent.turn_key + b"\0agent\0" + name, digest_size=32).digest()
        return Turn(key, parent.trace_id, parent.root_span_id, opens, opening, count, results)
    return _turn(key, traceparent, opens=opens, opening=opening, count=count, results=results)


def _prompt_key(session: str, prompt_id: str, agent_id: str | None) -> bytes:
    key = hashlib.blake2b(
        b"\0".join((b"sluice-prompt", session.encode(), prompt_id.encode())), digest_size=32
    ).digest()
    if agent_id:  # a subagent: spans of its own, in the prompt's trace
        key = hashlib.blake2b(key + b"\0agent\0" + agent_id.encode(), digest_size=32).digest()
    return key


def _hinted_turn(
    items: list[msgspec.Raw],
    session: str,
    hints: Hints,
    traceparent: tuple[int, int] | None,
    recall: Recall | None,
) -> Turn:
    """The turn named by the prompt id: immune to how the CLI shapes the opening message."""
    assert hints.prompt_id is not None
    opening, _, last_user, last_user_index = find_opening(items, recall)
    side = hints.request_class in SIDE_CLASSES
    agent = None if side else hints.agent_id
    key = _prompt_key(session, hints.prompt_id, agent)
    trace_id = int.from_bytes(_prompt_key(session, hints.prompt_id, None)[:16], "big") or 1
    caller = traceparent[1] if traceparent else None
    if agent:  # a subagent's root hangs under its parent agent's root
        caller = span_id(_prompt_key(session, hints.prompt_id, hints.parent_agent_id), b"root")
    opens = not side and (last_user is None or last_user_index == opening)
    results = _tool_results(items, opens, last_user, last_user_index)
    # A side call's spans have a lane of their own, told apart by its last message: a second
    # compaction call with a stricter instruction is another span, a re-send the same one.
    lane = (
        hints.request_class.encode() + b"\0" + hashlib.blake2b(items[-1], digest_size=8).digest()
        if side and hints.request_class and items
        else b""
    )
    if traceparent:
        trace_id = traceparent[0]
    count = len(items)
    return Turn(key, trace_id, caller, opens, opening, count, results, lane, hints.tool_durations)


def _tool_results(
    items: list[msgspec.Raw], opens: bool, last_user: Message | None, last_user_index: int
) -> tuple[ToolResult, ...]:
    """The tool results this request brings back, joined to the calls that asked for them."""
    results: tuple[ToolResult, ...] = ()
    if not opens and last_user is not None and not isinstance(last_user.content, str):
        returned = [b for b in last_user.content if b.type == "tool_result"]
        calls = find_tool_use(items, last_user_index, {str(b.tool_use_id) for b in returned})
        results = tuple(
            ToolResult(
                str(b.tool_use_id),
                calls[str(b.tool_use_id)][1] if str(b.tool_use_id) in calls else "",
                b.is_error is True,
                calls[str(b.tool_use_id)][0] if str(b.tool_use_id) in calls else None,
                calls[str(b.tool_use_id)][2] if str(b.tool_use_id) in calls else None,
                bytes(b.content),
            )
            for b in returned
        )
    return results


def _turn(
    key: bytes,
    traceparent: tuple[int, int] | None,
    *,
    opens: bool,
    opening: int,
    count: int,
    results: tuple[ToolResult, ...] = (),
) -> Turn:
    trace_id = traceparent[0] if traceparent else (int.from_bytes(key[:16], "big") or 1)
    caller = traceparent[1] if traceparent else None
    return Turn(key, trace_id, caller, opens, opening, count, results)


def opening_messages(messages_raw: Any, opening: int) -> list[Any]:
    """The turn's messages from its opening user message on (content capture)."""
    items = _RAW_LIST.decode(messages_raw) if messages_raw is not None else []
    return [orjson.loads(memoryview(item)) for item in items[opening:]]
