"""Choosing the provider for a request.

For now: the key's allowed providers, in config order, and the first one serves. Fallback
chains and circuit breaking build on this (they live here, outside the providers).
"""

from __future__ import annotations

from sluice.core.context import RequestContext
from sluice.errors import NoProviderConfigured
from sluice.providers.base import Provider
from sluice.store.keys_repo import VirtualKey


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
