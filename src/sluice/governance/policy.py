"""Per-key regex policy: tools, MCP servers, URLs and models.

Patterns are RE2 (``governance.patterns``) and match unanchored (``search``), so ``^Bash$``
is exact and ``Bash`` matches any tool containing it. Deny wins; a non-empty allow list makes
that dimension an allowlist. Patterns were validated when the key config was saved; here they
are compiled once per key revision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sluice.base.json_spans import spellings
from sluice.base.patterns import MAX_MATCHED_CHARS, Pattern, PatternError, compile_pattern
from sluice.base.text import echo
from sluice.config.vk import AllowDeny, VirtualKeyConfig
from sluice.errors import ToolNotAllowed, UrlNotAllowed
from sluice.governance.virtual_key import VirtualKey

_URL = re.compile(r"https?://[^\s\"'<>\\)\]}]+")
# Every match of ``_URL`` holds "http": raw JSON that cannot spell it holds no URL.
URL_SPELLINGS = spellings(b"http")


@dataclass(frozen=True, slots=True)
class Rules:
    dimension: str  # tools | mcp | urls | models
    allow: tuple[Pattern, ...]
    deny: tuple[Pattern, ...]

    broken: str | None = None  # a stored pattern RE2 cannot compile: refuse everything
    # Read several times a request: computed once (``__post_init__``), not a property.
    active: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "active", bool(self.allow or self.deny or self.broken))

    @classmethod
    def compile(cls, dimension: str, rules: AllowDeny) -> Rules:
        try:
            return cls(
                dimension,
                tuple(compile_pattern(p) for p in rules.allow),
                tuple(compile_pattern(p) for p in rules.deny),
            )
        except PatternError as exc:  # saved before patterns were RE2: fail closed
            return cls(dimension, (), (), f"policy_rules.{dimension}: {exc}; update the key")

    def violation(self, value: str) -> str | None:
        """Why ``value`` is refused (the rule, for messages and the ledger), or None."""
        if not self.active:
            return None
        if self.broken is not None:
            return self.broken
        limit = MAX_MATCHED_CHARS[self.dimension]
        if len(value) > limit:
            return f"policy_rules.{self.dimension}: value longer than {limit} characters"
        for pattern in self.deny:
            if pattern.search(value):
                return f"policy_rules.{self.dimension}.deny: {pattern.pattern}"
        if self.allow and not any(p.search(value) for p in self.allow):
            allowed = ", ".join(p.pattern for p in self.allow)
            return f"policy_rules.{self.dimension}.allow: {allowed}"
        return None


def mcp_server_of(tool_name: str) -> str | None:
    """Claude Code names MCP tools ``mcp__<server>__<tool>``."""
    if not tool_name.startswith("mcp__"):
        return None
    server, _, _ = tool_name[5:].partition("__")
    return server or None


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    tools: Rules
    mcp: Rules
    urls: Rules
    models: Rules
    tool_mode: str

    @classmethod
    def compile(cls, config: VirtualKeyConfig) -> KeyPolicy:
        rules = config.policy_rules
        return cls(
            Rules.compile("tools", rules.tools),
            Rules.compile("mcp", rules.mcp),
            Rules.compile("urls", rules.urls),
            Rules.compile("models", rules.models),
            rules.tools.mode,
        )

    @property
    def guards_tools(self) -> bool:
        return self.tools.active or self.mcp.active

    def tool_violation(self, name: str) -> str | None:
        reason = self.tools.violation(name)
        if reason is None and (server := mcp_server_of(name)) is not None:
            reason = self.mcp.violation(server)
        return reason

    def tool_error(self, name: str, reason: str) -> ToolNotAllowed:
        return ToolNotAllowed(
            f"Tool '{echo(name)}' is blocked by this key's policy ({reason})",
            meta={"tool": echo(name), "rule": reason},
            tips=["Ask an admin to change this key's policy_rules if the tool should be allowed."],
        )

    def check_declared(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        """(tool name, reason) for each declared tool and MCP server the policy refuses."""
        found: list[tuple[str, str]] = []
        tools = body.get("tools")
        if isinstance(tools, list):
            for tool in tools:
                name = tool.get("name") if isinstance(tool, dict) else None
                if isinstance(name, str) and (reason := self.tool_violation(name)):
                    found.append((name, reason))
        servers = body.get("mcp_servers")
        if isinstance(servers, list) and self.mcp.active:
            for server in servers:
                name = server.get("name") if isinstance(server, dict) else None
                if isinstance(name, str) and (reason := self.mcp.violation(name)):
                    found.append((f"mcp_servers[{name}]", reason))
        return found

    def check_urls(self, body: dict[str, Any]) -> None:
        """URLs in this turn's content (the last message) and in ``mcp_servers[].url``.

        Earlier turns are not rescanned: a URL that came back in an old tool result would
        otherwise block the session for good.
        """
        if not self.urls.active:
            return
        candidates: list[str] = []
        messages = body.get("messages")
        if isinstance(messages, list) and messages:
            candidates.extend(_URL.findall(_text_of(messages[-1])))
        servers = body.get("mcp_servers")
        if isinstance(servers, list):
            candidates.extend(
                s["url"] for s in servers if isinstance(s, dict) and isinstance(s.get("url"), str)
            )
        for url in candidates:
            reason = self.urls.violation(url)
            if reason is not None:
                raise UrlNotAllowed(
                    f"URL '{echo(url, 256)}' is blocked by this key's policy ({reason})",
                    meta={"url": echo(url, 256), "rule": reason},
                )


def _text_of(node: Any) -> str:
    """All string values in a message, joined (URLs are looked for in any of them). A loop,
    not recursion: a message may nest as deep as the parser allows."""
    parts: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(item.values()))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return "\n".join(parts)


class PolicyBook:
    """Compiled policies, one per key revision (recompiled when the key's config changes)."""

    def __init__(self) -> None:
        self._compiled: dict[str, tuple[int, KeyPolicy]] = {}

    def for_key(self, key: VirtualKey) -> KeyPolicy:
        cached = self._compiled.get(key.id)
        if cached is not None and cached[0] == key.updated_at:
            return cached[1]
        policy = KeyPolicy.compile(key.config)
        self._compiled[key.id] = (key.updated_at, policy)
        return policy
