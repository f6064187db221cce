"""Which model names a key may use (``models_allowed`` and ``policy_rules.models``)."""

from __future__ import annotations

from functools import lru_cache

from sluice.governance.patterns import Pattern, compile_pattern
from sluice.store.keys_repo import VirtualKey


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Pattern:
    return compile_pattern(pattern)


def matches_allowed(model: str, allowed: list[str]) -> bool:
    """Literals, or trailing-``*`` prefixes."""
    for entry in allowed:
        if entry.endswith("*"):
            if model.startswith(entry[:-1]):
                return True
        elif model == entry:
            return True
    return False


def model_permitted(key: VirtualKey, model: str) -> bool:
    cfg = key.config
    if cfg.models_allowed is not None and not matches_allowed(model, cfg.models_allowed):
        return False
    rules = cfg.policy_rules.models
    if any(_compiled(p).search(model) for p in rules.deny):
        return False
    return not rules.allow or any(_compiled(p).search(model) for p in rules.allow)
