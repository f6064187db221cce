"""Subagents without gateway hints: which turn started this conversation?

A subagent (Claude Code's ``Agent`` tool, ``Task`` in older CLIs) is a fresh conversation:
another system prompt, and the tool's ``prompt`` as its first user message, so the content
hash gives it a turn of its own. With hints the shared ``x-claude-code-prompt-id`` ties it to
its parent; without them (CLIs before 2.1.273, or the variable unset) this table does, per
gateway process, from what the CLI sends anyway (measured with 2.1.197 and 2.1.332):

- a main-agent response holding a ``Task``/``Agent`` tool_use makes its turn the session's
  *pending parent* (the relay keeps tool names and ids, not their inputs);
- the request that returns that call's ``tool_result`` shows its input (``prompt``,
  ``subagent_type``) and, in the result text, ``agentId: <id>``: learnt as links by prompt
  and by agent id (2.1.332 runs agents in the background, so this comes *before* the
  subagent's requests; 2.1.197 blocks, so it comes after);
- a subagent request carries ``x-claude-code-agent-id`` even without hints. It is linked by
  that id, else by its first user text equal to a learnt prompt, else (an agent id only) to
  the session's pending parent.

Everything is bounded (entries, TTL, bytes read): the keys and texts come from outside.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import msgspec
import orjson

from sluice.base.usage import INPUT_KEPT_TOOLS, ToolCall
from sluice.telemetry.ttl_lru import TtlLru
from sluice.telemetry.turns import ParentLink, Turn

SUBAGENT_TOOLS = INPUT_KEPT_TOOLS  # the relay keeps these tools' inputs
_AGENT_ID = re.compile(rb"agentId: ([A-Za-z0-9_-]{1,64})")
_READ_BYTES = 65_536  # of a tool input or result: the id and the fields are near the start
_TYPE_CHARS = 128
_FIRST = msgspec.json.Decoder(list[msgspec.Raw])
_REMINDER = "<system-reminder>"


def _digest(*parts: str) -> bytes:
    return hashlib.blake2b("\0".join(parts).encode(errors="replace"), digest_size=16).digest()


def first_user_text(messages_raw: Any) -> str | None:
    """The last text block of the first message that is not a ``<system-reminder>`` (Claude
    Code puts its context reminders before the subagent's prompt), or its string content."""
    if messages_raw is None:
        return None
    try:
        items = _FIRST.decode(messages_raw)
        first = orjson.loads(bytes(items[0])) if items else None
    except (msgspec.DecodeError, orjson.JSONDecodeError):
        return None
    content = first.get("content") if isinstance(first, dict) else None
    if isinstance(content, str):
        return content
    blocks = content if isinstance(content, list) else []
    texts = [
        text
        for b in blocks
        if isinstance(b, dict)
        and b.get("type") == "text"
        and isinstance(text := b.get("text"), str)
        and not text.lstrip().startswith(_REMINDER)
    ]
    return texts[-1] if texts else None


def _call_input(raw: bytes | None) -> tuple[str | None, str | None]:
    """(prompt, subagent_type) from a tool_use input, when it is a readable object."""
    if not raw or len(raw) > _READ_BYTES:
        return None, None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(value, dict):
        return None, None
    prompt, kind = value.get("prompt"), value.get("subagent_type")
    return (
        prompt if isinstance(prompt, str) else None,
        kind[:_TYPE_CHARS] if isinstance(kind, str) and kind else None,
    )


class SubagentLinks:
    """Bounded LRU tables with a TTL, one per gateway process (``Telemetry`` holds it)."""

    def __init__(self, *, max_entries: int = 10_000, ttl_s: float = 3600.0) -> None:
        def table() -> TtlLru[bytes, ParentLink]:
            return TtlLru(max_entries, ttl_s)

        self._pending = table()
        self._prompts = table()
        self._prompted = table()  # sessions
        self._agents = table()

    def __len__(self) -> int:
        return len(self._pending) + len(self._prompts) + len(self._agents) + len(self._prompted)

    def link(
        self, session: str, agent_id: str | None, messages_raw: Any, now: float
    ) -> ParentLink | None:
        """The parent of this request's conversation, when it is a known subagent's."""
        if not (self._agents or self._prompted or self._pending):
            return None  # no subagent seen yet anywhere: nothing to hash or look up
        if agent_id and (found := self._agents.get(_digest(session, agent_id), now)):
            return found
        sess = _digest(session)
        if sess not in self._prompted and not (agent_id and sess in self._pending):
            return None  # the common case: nothing to match, no decoding
        text = first_user_text(messages_raw)
        found = None
        if text is not None:
            found = self._prompts.get(_digest(session, "prompt", text), now)
        if found is None and agent_id:
            found = self._pending.get(sess, now)
        if found is not None and agent_id:
            self._put(self._agents, _digest(session, agent_id), found, now)
        return found

    def observe(
        self,
        session: str,
        turn: Turn,
        called: Sequence[ToolCall],
        now: float,
    ) -> None:
        """Learn from a finished request: the subagent tools its response called (with the
        input the relay kept: prompt and type, known before the subagent's first request),
        and the subagent calls its tool results answer."""
        calls = [call for call in called if call.name in SUBAGENT_TOOLS]
        results = [result for result in turn.tool_results if result.name in SUBAGENT_TOOLS]
        if not calls and not results:
            return  # the common case: no link to make, and no root span id to hash for one
        parent = ParentLink(turn.turn_key, turn.trace_id, turn.root_span_id)
        for call in calls:
            self._put(self._pending, _digest(session), parent, now)
            self._learn(session, parent, call.input, None, now)
        for result in results:
            self._learn(session, parent, result.arguments, result.result, now)

    def _learn(
        self,
        session: str,
        parent: ParentLink,
        arguments: bytes | None,
        result: bytes | None,
        now: float,
    ) -> None:
        prompt, kind = _call_input(arguments)
        link = replace(parent, agent_type=kind)
        if prompt is not None:
            self._put(self._prompts, _digest(session, "prompt", prompt), link, now)
            self._put(self._prompted, _digest(session), link, now)
        found = _AGENT_ID.search(result[:_READ_BYTES]) if result else None
        if found is not None:
            agent_id = found.group(1).decode()
            self._put(self._agents, _digest(session, agent_id), link, now)

    def _put(
        self, table: TtlLru[bytes, ParentLink], key: bytes, link: ParentLink, now: float
    ) -> None:
        table.put(key, link, now)
        for each in (self._pending, self._prompts, self._prompted, self._agents):
            each.prune(now)  # an insert anywhere clears what expired everywhere
