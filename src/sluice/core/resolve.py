"""Model resolution: which provider serves a request, under which model name.

Order: the key's alias, then ``provider-id/model``, then a model a provider declares (its
``models`` list, or what its ``/v1/models`` reports), then any ``claude-`` name on the key's
first Anthropic provider (or, for a Bedrock client's own id, Bedrock provider), as sent:
Anthropic accepts undated aliases (``claude-haiku-4-5``) and
models newer than a provider's list, so the upstream judges them. Nothing matched is a 404
``not_found_error`` (code ``model_not_recognized``) that lists names this key can use, as
Anthropic answers an unknown model, never a 504.
"""

from __future__ import annotations

import msgspec

from sluice.core.router import Router
from sluice.errors import ModelNotAllowed, ModelNotRecognized
from sluice.governance.model_access import model_permitted
from sluice.governance.virtual_key import VirtualKey
from sluice.providers.base import ModelInfo, Provider

_SUGGESTIONS = 10


class Resolution(msgspec.Struct, frozen=True):  # a Struct: built in C, per request
    provider_id: str
    model: str
    alias: str | None  # the alias the client used, when one resolved
    # Declared (an alias, or a provider's model list) rather than matched by shape: such a
    # name may become a metrics label; a merely dated name may be invented.
    known: bool = False


def _named(alias: str | None) -> str:
    return f' (named "{alias}" by this key)' if alias else ""


class ModelResolver:
    def __init__(self, router: Router) -> None:
        self._router = router
        # provider id -> (its model list, that list's ids): a set lookup per request instead
        # of a scan, rebuilt when the provider hands out a new list (a refresh).
        self._ids: dict[str, tuple[list[ModelInfo], frozenset[str]]] = {}

    async def usable_names(self, key: VirtualKey, providers: list[Provider]) -> list[str]:
        names = [a for a in key.config.model_aliases if a]
        for provider in providers:
            names += [m.id for m in await provider.list_models() if model_permitted(key, m.id)]
        return list(dict.fromkeys(names))

    async def resolve(
        self, key: VirtualKey, requested: str, as_sent: tuple[str, ...] = ("anthropic",)
    ) -> Resolution:
        """``as_sent``: the provider kinds that take an unlisted ``claude-`` name as sent (a
        Bedrock provider too when a Bedrock client named a Bedrock id)."""
        allowed = self._router.allowed_for(key)
        alias = requested if requested in key.config.model_aliases else None
        target = key.config.model_aliases[requested] if alias else requested
        found = await self._find(target, allowed, as_sent)
        if found is None:
            names = await self.usable_names(key, allowed)
            listed = ", ".join(names[:_SUGGESTIONS]) or "none"
            raise ModelNotRecognized(
                f"Model '{requested}' is not recognized by this gateway{_named(alias)}. "
                f"Models this key can use: {listed}.",
                param="model",
                meta={"model": requested, "suggestions": names[:_SUGGESTIONS]},
                tips=["Use a dated model name, or ask an admin for an alias (model_aliases)."],
            )
        provider_id, model, declared = found
        if not model_permitted(key, model):
            raise ModelNotAllowed(
                f"Model '{model}' is not allowed for this key{_named(alias)}.",
                param="model",
                meta={"model": model, "alias": alias},
                tips=["See models_allowed and policy_rules.models on the key."],
            )
        return Resolution(provider_id, model, alias, known=declared or alias is not None)

    async def _find(
        self, target: str, allowed: list[Provider], as_sent: tuple[str, ...]
    ) -> tuple[str, str, bool] | None:
        """(provider id, model, whether a provider lists the model), or None."""
        handle, slash, rest = target.partition("/")
        if slash and handle in self._router.providers:
            if all(p.id != handle for p in allowed):
                raise ModelNotAllowed(
                    f"Provider '{handle}' is not in this key's providers_allowed.",
                    param="model",
                    meta={"provider": handle},
                )
            return handle, rest, False
        for provider in allowed:
            if target in await self._listed(provider):
                return provider.id, target, True
        if target.startswith("claude-"):
            for provider in allowed:
                if provider.kind in as_sent:
                    return provider.id, target, False
        return None

    async def _listed(self, provider: Provider) -> frozenset[str]:
        models = await provider.list_models()
        known = self._ids.get(provider.id)
        if known is None or known[0] is not models:
            known = self._ids[provider.id] = (models, frozenset(m.id for m in models))
        return known[1]
