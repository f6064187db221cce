"""Choosing the providers for a request.

Without a fallback chain: the provider resolution chose (the key's allowed providers, in
config order). With the key's ``fallback.chain``: the chain, in its order, limited to the key's
allowed providers; the provider resolution chose goes first when the chain does not list it.
Sending along the chain (retries, circuit breakers) is ``core.fallback``.
"""

from __future__ import annotations

from sluice.core.context import RequestContext
from sluice.errors import NoProviderConfigured
from sluice.governance.virtual_key import VirtualKey
from sluice.providers.base import Provider


class Router:
    def __init__(self, providers: dict[str, Provider]) -> None:
        self.providers = providers

    def allowed_for(self, key: VirtualKey | None) -> list[Provider]:
        """The key's ``providers_allowed`` (null: all), in config order."""
        allowed = key.config.providers_allowed if key else None
        return [p for pid, p in self.providers.items() if allowed is None or pid in allowed]

    def pick(self, ctx: RequestContext) -> Provider:
        """The provider resolution chose; a provider outside the key's list is never used."""
        candidates = self.allowed_for(ctx.key)
        if ctx.provider_id is not None:
            candidates = [p for p in candidates if p.id == ctx.provider_id]
        if not candidates:
            raise NoProviderConfigured(
                "No provider is configured that this key may use.",
                tips=[
                    "Add a provider under `providers:` in sluice.yaml, or check providers_allowed."
                ],
            )
        return candidates[0]

    def chain(self, ctx: RequestContext) -> list[Provider] | None:
        """The providers to try in order, or None when the key has no fallback chain."""
        fallback = ctx.key.config.fallback if ctx.key is not None else None
        if fallback is None or not fallback.chain:
            return None
        first = self.pick(ctx)
        allowed = {p.id for p in self.allowed_for(ctx.key)}
        ids = list(fallback.chain)
        if first.id not in ids:
            ids.insert(0, first.id)
        return [self.providers[pid] for pid in ids if pid in allowed and pid in self.providers]

    def counter_for(self, ctx: RequestContext) -> Provider | None:
        """count_tokens: the provider that would serve the request, else another one of the
        key's that serves the same model and can count it; None when none can (estimate)."""
        first = self.pick(ctx)
        model = ctx.model_sent or ""
        ordered = self.chain(ctx) or [first]
        ordered += [p for p in self.allowed_for(ctx.key) if p not in ordered]
        for provider in ordered:
            if provider.model_id_for(model) is not None and provider.can_count_tokens(model):
                return provider
        return None
