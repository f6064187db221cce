"""Resolution and dispatch: which provider serves the request under which model name, with
the body edits that follow (alias splice, cache mode); then the send along the provider
chain, whose response the relay streams back."""

from __future__ import annotations

from sluice.base.settlement import Settlement
from sluice.core.body_edit import splice_model, strip_cache_control
from sluice.core.context import RequestContext
from sluice.core.fallback import FallbackSender
from sluice.core.resolve import ModelResolver
from sluice.core.router import Router
from sluice.core.steps.base import SettleNothing

_AS_SENT = ("anthropic",)
_BEDROCK_AS_SENT = ("anthropic", "bedrock")


class Resolve(SettleNothing):
    def __init__(self, resolver: ModelResolver, router: Router) -> None:
        self.resolver = resolver
        self.router = router

    async def admit(self, ctx: RequestContext) -> None:
        key = ctx.key
        assert key is not None and ctx.model_requested is not None
        # A Bedrock client's own id may go to a Bedrock provider as the client named it.
        as_sent = _BEDROCK_AS_SENT if ctx.door_model is not None else _AS_SENT
        resolution = await self.resolver.resolve(key, ctx.model_requested, as_sent)
        ctx.provider_id = resolution.provider_id
        ctx.model_known = resolution.known
        if resolution.model != ctx.model_requested:
            ctx.body = splice_model(ctx.body, resolution.model)
            ctx.model_sent = resolution.model
        mode = key.config.cache.mode
        if mode == "disable" and ctx.endpoint == "messages":
            ctx.body, removed = strip_cache_control(ctx.body)
            ctx.content_edited = ctx.content_edited or bool(removed)
        ctx.response_headers.append((b"x-langwatch-cache-mode", mode.encode()))
        provider = self.router.pick(ctx)
        ctx.provider_id, ctx.provider_kind = provider.id, provider.kind


class Dispatch:
    """Sends along the key's chain; count_tokens goes to a provider that can count the model,
    and is estimated (``ctx.upstream`` stays None) when none can."""

    def __init__(self, router: Router, sender: FallbackSender) -> None:
        self.router = router
        self.sender = sender

    async def admit(self, ctx: RequestContext) -> None:
        plan = self.router.plan(ctx)
        if plan is not None:  # None: count_tokens that no provider of the key can count
            ctx.upstream = await self.sender.send(ctx, plan)

    def settle(self, ctx: RequestContext, settlement: Settlement) -> None:
        upstream, ctx.upstream = ctx.upstream, None
        if upstream is not None and not ctx.relayed:
            upstream.close(True)  # never relayed (the handler failed first): free it
