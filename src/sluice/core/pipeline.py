"""The request-side pipeline, cheapest check first: request policy (models, URLs, declared
tools), the remembered tool verdict, model resolution, then body edits (alias splice, cache
mode). It returns the response-side guard, if the key's policy needs one."""

from __future__ import annotations

from typing import Any

from sluice.core.body_edit import splice_model, strip_cache_control, strip_named
from sluice.core.context import RequestContext
from sluice.core.peek import check_tools, last_message, loads
from sluice.core.resolve import ModelResolver
from sluice.core.tool_guard import ToolGuard
from sluice.errors import ModelNotAllowed
from sluice.governance.policy import PolicyBook
from sluice.governance.verdicts import Verdicts, body_fingerprint


class Pipeline:
    def __init__(self, resolver: ModelResolver, policies: PolicyBook, verdicts: Verdicts) -> None:
        self.resolver = resolver
        self.policies = policies
        self.verdicts = verdicts

    async def admit(self, ctx: RequestContext) -> ToolGuard | None:
        key = ctx.key
        assert key is not None and ctx.model_requested is not None
        policy = self.policies.for_key(key)
        messages_call = ctx.endpoint == "messages"

        if (reason := policy.models.violation(ctx.model_requested)) is not None:
            raise ModelNotAllowed(
                f"Model '{ctx.model_requested}' is not allowed for this key ({reason}).",
                param="model",
                meta={"model": ctx.model_requested, "rule": reason},
            )
        if policy.urls.active:
            # Only this turn's message is scanned: parse it alone, not the whole history.
            view: dict[str, Any] = {"messages": [last_message(ctx)]}
            if ctx.mcp_servers_raw is not None:
                view["mcp_servers"] = loads(ctx.mcp_servers_raw)
            policy.check_urls(view)
        guard: ToolGuard | None = None
        if policy.guards_tools:
            # Declared tools matter only to the opt-in modes and to provider-side MCP servers;
            # block_calls needs no parse of the (large) body at all.
            needs_parse = policy.tool_mode != "block_calls" or (
                policy.mcp.active and ctx.mcp_servers_raw is not None
            )
            if needs_parse:
                check_tools(ctx.body)  # the names judged must be the names relayed
            declared = policy.check_declared(ctx.parsed_body()) if needs_parse else []
            # A denied MCP server in mcp_servers[] runs on the provider's side, where no
            # response guard can stop its calls: refuse it unless the mode strips it.
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
                ctx.body = strip_named(
                    strip_named(ctx.body, "tools", tools), "mcp_servers", servers
                )
            if messages_call:
                # Claude Code's retry after a mid-stream error comes without `stream`: only
                # those requests look for a remembered verdict, and only when this key has one
                # (streams, and keys with no live verdict, skip the hashing).
                if not ctx.stream and await self.verdicts.any_for(key.id):
                    ctx.fingerprint = body_fingerprint(ctx.received_body)
                    remembered = await self.verdicts.get(key.id, ctx.fingerprint)
                    if remembered is not None:
                        ctx.policy_violation = str(remembered.meta.get("rule"))
                        raise remembered
                guard = ToolGuard(policy)

        resolution = await self.resolver.resolve(key, ctx.model_requested)
        ctx.provider_id = resolution.provider_id
        ctx.model_known = resolution.known
        if resolution.model != ctx.model_requested:
            ctx.body = splice_model(ctx.body, resolution.model)
            ctx.model_sent = resolution.model

        mode = key.config.cache.mode
        if mode == "disable" and messages_call:
            ctx.body, _removed = strip_cache_control(ctx.body)
        ctx.response_headers.append((b"x-langwatch-cache-mode", mode.encode()))
        return guard

    async def remember(self, ctx: RequestContext, guard: ToolGuard | None) -> None:
        """After the response: keep a tool verdict for Claude Code's non-streaming retry."""
        if guard is None or guard.violation is None:
            return
        ctx.policy_violation = str(guard.violation.meta.get("rule"))
        if ctx.key is not None:
            fingerprint = ctx.fingerprint or body_fingerprint(ctx.received_body)
            await self.verdicts.put(ctx.key.id, fingerprint, guard.violation)
