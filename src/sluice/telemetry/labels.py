"""Bounded label values: nothing a client sends becomes a Prometheus label as it is.

Every label child lives for the life of the process, so one value per invented string is a
memory leak and a scrape that grows without end (issue #11: 20,000 invented model names made
``/metrics`` 119 MB). A model is a label only when it is *known*: in a provider's configured
``models`` or ``model_map``, a default Bedrock/Vertex mapping, the price table's model ids, a
key's declared ``model_aliases`` (name or target), or a model a provider listed when the
request was resolved. Anything else is ``other``. Provider labels are configured ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sluice.base.settlement import Settlement
from sluice.config.providers import AnyProviderConfig
from sluice.translate.bedrock import DEFAULT_MODEL_MAP as BEDROCK_DEFAULTS
from sluice.translate.vertex import DEFAULT_MODEL_MAP as VERTEX_DEFAULTS

OTHER = "other"
AUTH_REASONS = frozenset({"missing", "malformed", "unknown", "mismatch"})
RATE_DIMENSIONS = frozenset({"rpm", "tpm", "rpd", "max_concurrent"})
FALLBACK_REASONS = frozenset({"5xx", "rate_limit", "timeout", "network"})


def bounded(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


def status_label(status: int) -> str:
    """HTTP statuses as they are (at most 500 values); anything out of range is ``other``."""
    return str(status) if status == 0 or 100 <= status <= 599 else OTHER


def configured_models(providers: Mapping[str, AnyProviderConfig]) -> set[str]:
    """The Anthropic model ids the configured providers declare or map."""
    names: set[str] = set()
    for cfg in providers.values():
        names.update(cfg.models or [])
        names.update(getattr(cfg, "model_map", {}))
        if cfg.type == "bedrock":
            names.update(BEDROCK_DEFAULTS)
        elif cfg.type == "vertex":
            names.update(VERTEX_DEFAULTS)
    return names


class ModelLabels:
    """Maps a request's model to a label value from a bounded set."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._known = frozenset(known)

    def __contains__(self, model: str) -> bool:
        return model in self._known

    def model(self, settled: Settlement) -> str:
        """The label for the model sent upstream; empty before a provider is chosen."""
        model = settled.model_sent
        if not model or not settled.provider:
            return ""
        if settled.model_declared or model in self._known:
            return model
        return OTHER
