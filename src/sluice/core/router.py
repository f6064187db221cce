"""Choosing the providers for a request.

Without a fallback chain: the provider resolution chose (the key's allowed providers, in
config order). With the key's ``fallback.chain``: the chain, in its order, limited to the key's
allowed providers; the provider resolution chose goes first when the chain does not list it.
``plan`` gives either as a ``Plan``: the providers and the policy to walk them. Sending along
it (retries, circuit breakers) is ``core.fallback``, one path for both: a request without a
chain walks a one-element one under ``SINGLE``. There is nowhere to fall back to, so its
attempt is bounded only by the provider's own header timeout, a stream is not read ahead to its
first event, and the circuit breaker judges the attempt but never refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from sluice.config.vk import FallbackConfig
from sluice.core.context import RequestContext
from sluice.errors import NoProviderConfigured
from sluice.governance.virtual_key import VirtualKey
from sluice.providers.base import Provider


@dataclass(frozen=True, slots=True)
class ChainPolicy:
    # Failures (``5xx``, ``rate_limit``, ``timeout``, ``network``) that move on to the next
    # provider; any other failure is the answer.
    triggers: frozenset[str]
    max_attempts: int  # providers called at most; 0: every one in the chain
    # Per attempt: response headers and (with ``read_ahead``) the first SSE event; None: only
    # the provider's header timeout bounds it.
    timeout_s: float | None
    # A stream counts as answered only once its first event is read (an ``overloaded_error``
    # as the first event is a failure like a 529).
    read_ahead: bool
    # Walk around trouble: skip a provider whose circuit is open, that has no id for the
    # model or cannot express the request, and log each failed attempt.
    route_around: bool

    @classmethod
    def of(cls, config: FallbackConfig) -> ChainPolicy:
        return cls(
            triggers=frozenset(config.on),
            max_attempts=config.max_attempts or 0,
            timeout_s=config.timeout_ms / 1000,
            read_ahead=True,
            route_around=True,
        )


SINGLE: Final = ChainPolicy(
    triggers=frozenset(), max_attempts=1, timeout_s=None, read_ahead=False, route_around=False
)


class Plan(msgspec.Struct, frozen=True):  # a Struct: built in C, per request
    providers: tuple[Provider, ...]  # in the order to try them; never empty
    policy: ChainPolicy


class Router:
    def __init__(self, providers: dict[str, Provider]) -> None:
        self.providers = providers
        # Projects with credentials of their own: project -> the providers, those overridden
        # replaced by the project's instance (server/project_providers.py swaps it whole).
        self.by_project: dict[str, dict[str, Provider]] = {}
        # key id -> (the key object, the providers dict, its allowed providers): a request
        # asks two or three times, and the answer holds while neither object is replaced
        # (a key change replaces the key object; a project's credentials, its whole dict).
        self._allowed: dict[str, tuple[VirtualKey, dict[str, Provider], list[Provider]]] = {}

    def providers_of(self, key: VirtualKey | None) -> dict[str, Provider]:
        """The providers a key's requests go to: its project's, else the server's (one dict
        get; a project without credentials of its own is not in ``by_project``)."""
        if key is None or key.project is None:
            return self.providers
        return self.by_project.get(key.project, self.providers)

    def allowed_for(self, key: VirtualKey | None) -> list[Provider]:
        """The key's ``providers_allowed`` (null: all), in config order. Callers must not
        change the list: it is shared while the key and its providers stay the same."""
        providers = self.providers_of(key)
        if key is None:
            return list(providers.values())
        known = self._allowed.get(key.id)
        if known is not None and known[0] is key and known[1] is providers:
            return known[2]
        allowed = key.config.providers_allowed
        found = [p for pid, p in providers.items() if allowed is None or pid in allowed]
        self._allowed[key.id] = (key, providers, found)
        return found

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

    def plan(self, ctx: RequestContext) -> Plan | None:
        """What to send the request to. ``messages``: the key's fallback chain under its
        policy, else the picked provider alone. ``count_tokens``: the provider that can count
        it, alone; None when none can (the caller answers with an estimate)."""
        if ctx.endpoint != "messages":
            counter = self._counter(ctx)
            return Plan((counter,), SINGLE) if counter is not None else None
        fallback = _fallback(ctx)
        if fallback is None:
            return Plan((self.pick(ctx),), SINGLE)
        return Plan(tuple(self._chain(ctx, fallback)), ChainPolicy.of(fallback))

    def _chain(self, ctx: RequestContext, fallback: FallbackConfig) -> list[Provider]:
        """The key's fallback chain in its order, limited to the key's allowed providers; the
        picked provider goes first when the chain does not list it."""
        first = self.pick(ctx)
        allowed = {p.id for p in self.allowed_for(ctx.key)}
        ids = list(fallback.chain)
        if first.id not in ids:
            ids.insert(0, first.id)
        providers = self.providers_of(ctx.key)
        return [providers[pid] for pid in ids if pid in allowed and pid in providers]

    def _counter(self, ctx: RequestContext) -> Provider | None:
        """count_tokens: the provider that would serve the request, else another one of the
        key's that serves the same model and can count it; None when none can (estimate)."""
        first = self.pick(ctx)
        model = ctx.model_sent or ""
        fallback = _fallback(ctx)
        ordered = self._chain(ctx, fallback) if fallback is not None else [first]
        ordered += [p for p in self.allowed_for(ctx.key) if p not in ordered]
        for provider in ordered:
            if provider.model_id_for(model) is not None and provider.can_count_tokens(model):
                return provider
        return None


def _fallback(ctx: RequestContext) -> FallbackConfig | None:
    """The key's fallback config when it names a chain."""
    fallback = ctx.key.config.fallback if ctx.key is not None else None
    return fallback if fallback is not None and fallback.chain else None
