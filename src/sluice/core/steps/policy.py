"""The key's request policy, cheapest check first: models, URLs in this turn's message,
declared tools and MCP servers, then the remembered tool verdict. It leaves a response-side
tool guard on the context when the key's policy needs one, and on settle remembers the
guard's verdict for Claude Code's non-streaming retry of the same body."""

from __future__ import annotations

from typing import Any

from sluice.base.settlement import Settlement
from sluice.core.body_edit import strip_named
from sluice.core.context import RequestContext
from sluice.core.peek import check_tools, last_message, loads
from sluice.core.steps.limits import Spawn
from sluice.core.tool_guard import ToolGuard
from sluice.errors import ModelNotAllowed
from sluice.governance.policy import URL_SPELLINGS, KeyPolicy, PolicyBook
from sluice.governance.verdicts import Verdicts, conversation_fingerprint


class Policy:
    def __init__(self, policies: PolicyBook, verdicts: Verdicts, spawn: Spawn) -> None:
        self.policies = policies
        self.verdicts = verdicts
        self.spawn = spawn

    async def admit(self, ctx: RequestContext) -> None:
        assert ctx.key is not None and ctx.model_requested is not None
        policy = self.policies.for_key(ctx.key)
        if (reason := policy.models.violation(ctx.model_requested)) is not None:
            raise ModelNotAllowed(
                f"Model '{ctx.model_requested}' is not allowed for this key ({reason}).",
                param="model",
                meta={"model": ctx.model_requested, "rule": reason},
            )
        if policy.urls.active:
            # Only this turn's message is scanned: parse it alone, not the whole history,
            # and not at all when it cannot spell a URL (the scan looks for ``http``).
            message = last_message(ctx, URL_SPELLINGS)
            if message is not None or ctx.mcp_servers_raw is not None:
                view: dict[str, Any] = {"messages": [message]}
                if ctx.mcp_servers_raw is not None:
                    view["mcp_servers"] = loads(ctx.mcp_servers_raw)
                policy.check_urls(view)
        if policy.guards_tools:
            _check_declared_tools(ctx, policy)
            if ctx.endpoint == "messages":
                await self._check_remembered(ctx)
                ctx.guard = ToolGuard(policy)

    async def _check_remembered(self, ctx: RequestContext) -> None:
        """Claude Code's retry after a mid-stream error comes without `stream`: only those
        requests look for a remembered verdict, and only when this key has one (streams, and
        keys with no live verdict, skip the hashing)."""
        assert ctx.key is not None
        if ctx.stream or not await self.verdicts.any_for(ctx.key.id):
            return
        ctx.fingerprint = _fingerprint(ctx)
        remembered = await self.verdicts.get(ctx.key.id, ctx.fingerprint)
        if remembered is not None:
            ctx.policy_violation = str(remembered.meta.get("rule"))
            raise remembered

    def settle(self, ctx: RequestContext, settlement: Settlement) -> None:
        guard = ctx.guard
        if guard is None or guard.violation is None or ctx.key is None:
            return
        fingerprint = ctx.fingerprint or _fingerprint(ctx)
        self.spawn(self.verdicts.put(ctx.key.id, fingerprint, guard.violation))


def _fingerprint(ctx: RequestContext) -> bytes:
    return conversation_fingerprint(ctx.model_requested or "", bytes(ctx.messages_raw or b""))


def _check_declared_tools(ctx: RequestContext, policy: KeyPolicy) -> None:
    """Declared tools matter only to the opt-in modes and to provider-side MCP servers;
    block_calls needs no parse of the (large) body at all."""
    needs_parse = policy.tool_mode != "block_calls" or (
        policy.mcp.active and ctx.mcp_servers_raw is not None
    )
    if not needs_parse:
        return
    check_tools(ctx.body)  # the names judged must be the names relayed
    declared = policy.check_declared(ctx.parsed_body())
    # A denied MCP server in mcp_servers[] runs on the provider's side, where no response
    # guard can stop its calls: refuse it unless the mode strips it.
    refused = [
        (n, r)
        for n, r in declared
        if policy.tool_mode == "reject_declared" or n.startswith("mcp_servers[")
    ]
    if refused and policy.tool_mode != "strip":
        name, reason = refused[0]
        ctx.policy_violation = reason
        raise policy.tool_error(name, reason)
    if declared and policy.tool_mode == "strip":
        tools = {n for n, _ in declared if not n.startswith("mcp_servers[")}
        servers = {n[12:-1] for n, _ in declared if n.startswith("mcp_servers[")}
        ctx.body = strip_named(strip_named(ctx.body, "tools", tools), "mcp_servers", servers)
        ctx.content_edited = True
