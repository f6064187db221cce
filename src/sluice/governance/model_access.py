"""Which model names a key may use (``models_allowed`` and ``policy_rules.models``)."""

from __future__ import annotations

from functools import lru_cache

from sluice.base.patterns import Pattern, PatternError, compile_pattern
from sluice.governance.virtual_key import VirtualKey


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Pattern | None:
    try:
        return compile_pattern(pattern)
    except PatternError:  # a stored key saved before patterns were RE2
        return None


def _matches(pattern: str, model: str, if_broken: bool) -> bool:
    """A pattern RE2 cannot compile fails closed: as a deny it matches all, as an allow none."""
    compiled = _compiled(pattern)
    return if_broken if compiled is None else compiled.search(model) is not None


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
    if rules.deny and any(_matches(p, model, True) for p in rules.deny):
        return False
    return not rules.allow or any(_matches(p, model, False) for p in rules.allow)
