"""Prices from genai-prices, with operator overrides. An unknown price is unknown, never 0.

Costs are integer micro-USD: a rate of $X per million tokens is X micro-USD per token.
Anthropic's ``input_tokens`` excludes cached tokens; genai-prices expects the total, so the
usage is converted here. Every price is reduced once per model to five rates per input-size
band (flat prices have one band) and applied exactly: calling genai-prices per request costs
~0.7 ms, more than the whole rest of the request path. A rate with at most ``_SCALE_DIGITS``
decimals (every published one) is also kept as an integer count of 10^-12 micro-USD, so a
request's cost is integer arithmetic, not Decimal's (same result, a third of the time).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ClauseEquals, ClauseOr, MatchLogic, ModelPrice, TieredPrices

from sluice.base.usage import Usage
from sluice.config.models import PriceOverride, PricingConfig

log = logging.getLogger("sluice.pricing")

# Lookups remembered, least recently used dropped first: model names are the client's, and
# genai-prices prices any name by its prefix, so the cache must not grow with invented ones.
PRICE_CACHE_MAX = 4096

# Our provider kinds -> genai-prices provider ids.
_PROVIDER_IDS = {"anthropic": "anthropic", "bedrock": "aws", "vertex": "google"}


_SCALE_DIGITS = 12
_SCALE = 1_000_000_000_000  # 10 ** _SCALE_DIGITS


_UNKNOWN = object()  # not in the price cache (None there: a model with no known price)


def _scaled(rate: Decimal) -> int | None:
    """``rate`` in 10^-12 units when that is exact, else None."""
    value = rate.scaleb(_SCALE_DIGITS)
    return int(value) if value == value.to_integral_value() else None


def _billed(usage: Usage) -> tuple[int, int, int, int, int]:
    """Tokens at each of the five rates: input, output, cache read, 5-minute and 1-hour cache
    writes (Anthropic counts all cache writes together, and the 1-hour ones apart)."""
    write_1h = usage.cache_creation_1h_tokens
    write_5m = max(0, usage.cache_creation_tokens - write_1h)
    return usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, write_5m, write_1h


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens (= micro-USD per token)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    # The five rates in 10^-12 micro-USD per token, when all are exact there.
    scaled: tuple[int, int, int, int, int] | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        rates = (self.input, self.output, self.cache_read, self.cache_write_5m, self.cache_write_1h)
        scaled = [_scaled(rate) for rate in rates]
        object.__setattr__(self, "scaled", None if None in scaled else tuple(scaled))

    @classmethod
    def from_override(cls, o: PriceOverride) -> Rates:
        return cls(
            Decimal(str(o.input_per_mtok)),
            Decimal(str(o.output_per_mtok)),
            Decimal(str(o.cache_read_per_mtok)),
            Decimal(str(o.cache_write_5m_per_mtok)),
            Decimal(str(o.cache_write_1h_per_mtok)),
        )

    def micros(self, usage: Usage) -> Decimal:
        inp, out, read, write_5m, write_1h = _billed(usage)
        return (
            inp * self.input
            + out * self.output
            + read * self.cache_read
            + write_5m * self.cache_write_5m
            + write_1h * self.cache_write_1h
        )

    def cost(self, usage: Usage) -> int:
        """``micros(usage)`` rounded half up to whole micro-USD."""
        scaled = self.scaled
        if scaled is None:
            return _to_micros(self.micros(usage))
        inp, out, read, write_5m, write_1h = _billed(usage)
        total = (
            inp * scaled[0]
            + out * scaled[1]
            + read * scaled[2]
            + write_5m * scaled[3]
            + write_1h * scaled[4]
        )
        return (total + _SCALE // 2) // _SCALE  # token counts are never negative


@dataclass(frozen=True, slots=True)
class TieredRates:
    """Rates by band of total input tokens: genai-prices' "cliff" tiers, where a request whose
    total input passes a tier's start pays that tier's rate on all its tokens."""

    bands: tuple[tuple[int, Rates], ...]  # (start, rates), ascending; the first start is -1

    def for_input(self, total_input: int) -> Rates:
        chosen = self.bands[0][1]
        for start, rates in self.bands:
            if total_input > start:
                chosen = rates
        return chosen


def _at(price: Decimal | TieredPrices | None, total_input: int) -> Decimal | None:
    if not isinstance(price, TieredPrices):
        return price
    applicable = price.base
    for tier in price.tiers:  # sorted ascending by genai-prices
        if total_input > tier.start:
            applicable = tier.price
    return applicable


def _rates_at(price: ModelPrice, total_input: int) -> Rates | None:
    inp = _at(price.input_mtok, total_input)
    out = _at(price.output_mtok, total_input)
    if inp is None or out is None:
        return None
    read = _at(price.cache_read_mtok, total_input)
    write = _at(price.cache_write_mtok, total_input)
    write_1h = _at(price.cache_write_1h_mtok, total_input)
    write = write if write is not None else inp
    return Rates(
        inp,
        out,
        read if read is not None else inp,
        write,
        write_1h if write_1h is not None else write,
    )


def _compile(price: ModelPrice) -> Rates | TieredRates | None:
    """Five rates per band of total input; None when a price is neither a number nor tiers."""
    fields = (
        price.input_mtok,
        price.output_mtok,
        price.cache_read_mtok,
        price.cache_write_mtok,
        price.cache_write_1h_mtok,
    )
    if not all(f is None or isinstance(f, Decimal | TieredPrices) for f in fields):
        return None
    starts = sorted({t.start for f in fields if isinstance(f, TieredPrices) for t in f.tiers})
    base = _rates_at(price, 0)
    if base is None:
        return None
    if not starts:
        return base
    bands = [(-1, base)]
    for start in starts:
        rates = _rates_at(price, start + 1)
        if rates is None:
            return None
        bands.append((start, rates))
    return TieredRates(tuple(bands))


def _exact_names(clause: MatchLogic) -> list[str]:
    """The names a match clause lists exactly (prefix and substring clauses match any
    invented suffix, so they list nothing)."""
    if isinstance(clause, ClauseEquals):
        return [clause.equals]
    if isinstance(clause, ClauseOr):
        return [name for sub in clause.or_ for name in _exact_names(sub)]
    return []


def _to_micros(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class Pricing:
    def __init__(
        self, config: PricingConfig | None = None, *, cache_max: int = PRICE_CACHE_MAX
    ) -> None:
        cfg = config or PricingConfig()
        self._cache_max = cache_max
        self._overrides = {m: Rates.from_override(o) for m, o in cfg.overrides.items()}
        self._fallback = Rates.from_override(cfg.unknown_model_price)
        self._cache: OrderedDict[tuple[str, str], Rates | TieredRates | ModelPrice | None]
        self._cache = OrderedDict()

    @property
    def cached(self) -> int:
        return len(self._cache)

    def _lookup(self, provider_kind: str, model: str) -> Rates | TieredRates | ModelPrice | None:
        key = (provider_kind, model)
        cached = self._cache.get(key, _UNKNOWN)
        if cached is not _UNKNOWN:  # one lookup, not two: this runs twice a request
            self._cache.move_to_end(key)
            return cached  # type: ignore[return-value]
        found: Rates | TieredRates | ModelPrice | None = self._overrides.get(model)
        if found is None:
            try:
                result = calc_price(
                    PriceUsage(input_tokens=1, output_tokens=1),
                    model,
                    provider_id=_PROVIDER_IDS.get(provider_kind, provider_kind),
                )
                found = _compile(result.model_price) or result.model_price
            except LookupError:
                # Once per model (while remembered): recorded as unknown, not as free.
                log.warning(
                    "no price for %s model %r: cost recorded as unknown", provider_kind, model
                )
                found = None
        self._cache[key] = found
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return found

    def known_models(self) -> frozenset[str]:
        """Model names the price table (and the overrides) know exactly: a bounded set."""
        names = set(self._overrides)
        for provider in get_snapshot().providers:
            if provider.id in _PROVIDER_IDS.values():
                for model in provider.models:
                    names.add(model.id)
                    names.update(_exact_names(model.match))
        return frozenset(names)

    def warm(self, provider_kind: str, models: list[str]) -> None:
        """Look prices up at start-up, not on a first request (the first lookup loads the
        genai-prices snapshot)."""
        for model in models:
            self._lookup(provider_kind, model)

    def cost_micros(self, provider_kind: str, model: str, usage: Usage) -> int | None:
        """The exact cost in micro-USD, or None when the model has no known price."""
        found = self._lookup(provider_kind, model)
        if found is None:
            return None
        total_input = usage.input_tokens + usage.cache_read_tokens + usage.cache_creation_tokens
        if isinstance(found, Rates):
            return found.cost(usage)
        if isinstance(found, TieredRates):
            return found.for_input(total_input).cost(usage)
        # A price shape we can't reduce (none known today): genai-prices each time.
        priced = found.calc_price(
            PriceUsage(
                input_tokens=total_input,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_creation_tokens,
                cache_write_1h_tokens=usage.cache_creation_1h_tokens,
            )
        )
        return _to_micros(priced["total_price"] * 1_000_000)

    def budget_micros(self, provider_kind: str, model: str, usage: Usage) -> int:
        """What a budget counts: the known cost, else the configured fallback price."""
        known = self.cost_micros(provider_kind, model, usage)
        return known if known is not None else self._fallback.cost(usage)
