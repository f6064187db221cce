"""Prices: hand-computed costs for Anthropic, Bedrock and Vertex ids; unknown is unknown."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.base.usage import Usage
from sluice.config.models import PriceOverride, PricingConfig
from sluice.pricing import Pricing, Rates, TieredRates

# 1,000 uncached input, 500 output, 2,000 cache read, 512 5m writes + 256 1h writes.
USAGE = Usage(
    input_tokens=1000,
    output_tokens=500,
    cache_read_tokens=2000,
    cache_creation_tokens=768,
    cache_creation_5m_tokens=512,
    cache_creation_1h_tokens=256,
    seen=True,
)


@pytest.mark.parametrize(
    ("kind", "model", "micros"),
    [
        # $5 in, $25 out, $0.50 read, $6.25 5m write, $10 1h write per MTok
        ("anthropic", "claude-opus-4-8", 1000 * 5 + 500 * 25 + 2000 * 0.5 + 512 * 6.25 + 256 * 10),
        # $1, $5, $0.10, $1.25, $2 (dated id resolves to claude-haiku-4-5)
        (
            "anthropic",
            "claude-haiku-4-5-20251001",
            1000 + 500 * 5 + 2000 * 0.1 + 512 * 1.25 + 256 * 2,
        ),
        # Bedrock cross-region profile: list price +10 % ($3.30, $16.50, $0.33, $4.125, $6.60)
        (
            "bedrock",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            1000 * 3.3 + 500 * 16.5 + 2000 * 0.33 + 512 * 4.125 + 256 * 6.6,
        ),
        # Vertex id with @date
        ("vertex", "claude-haiku-4-5@20251001", 1000 + 500 * 5 + 2000 * 0.1 + 512 * 1.25 + 256 * 2),
        # Tiered (Sonnet 4.5 below 200k input): $3, $15, $0.30, $3.75, $6
        (
            "anthropic",
            "claude-sonnet-4-5-20250929",
            1000 * 3 + 500 * 15 + 2000 * 0.3 + 512 * 3.75 + 256 * 6,
        ),
    ],
)
def test_known_models(kind: str, model: str, micros: float) -> None:
    assert Pricing().cost_micros(kind, model, USAGE) == round(micros)


def test_unknown_model_is_unknown_but_counts_for_budgets(caplog: pytest.LogCaptureFixture) -> None:
    pricing = Pricing(
        PricingConfig(unknown_model_price=PriceOverride(input_per_mtok=10, output_per_mtok=20))
    )
    assert pricing.cost_micros("anthropic", "claude-mystery-9", USAGE) is None
    assert pricing.cost_micros("anthropic", "claude-mystery-9", USAGE) is None
    assert sum("claude-mystery-9" in r.getMessage() for r in caplog.records) == 1  # warned once
    assert pricing.budget_micros("anthropic", "claude-mystery-9", USAGE) == 1000 * 10 + 500 * 20


def test_override_wins() -> None:
    pricing = Pricing(
        PricingConfig(
            overrides={
                "claude-opus-4-8": PriceOverride(
                    input_per_mtok=1,
                    output_per_mtok=2,
                    cache_read_per_mtok=0.5,
                    cache_write_5m_per_mtok=1,
                    cache_write_1h_per_mtok=4,
                )
            }
        )
    )
    assert pricing.cost_micros("anthropic", "claude-opus-4-8", USAGE) == (
        1000 + 500 * 2 + 2000 * 0.5 + 512 + 256 * 4
    )
    assert pricing.cost_micros("anthropic", "my-local-model", USAGE) is None


def test_tiered_price_above_the_threshold_applies_to_every_token() -> None:
    # Sonnet 4.5 above 200k total input: $6 in, $22.50 out, $0.60 read, $7.50 5m, $12 1h.
    big = Usage(
        input_tokens=150_000,
        output_tokens=500,
        cache_read_tokens=50_000,
        cache_creation_tokens=768,
        cache_creation_1h_tokens=256,
    )
    expected = 150_000 * 6 + 500 * 22.5 + 50_000 * 0.6 + 512 * 7.5 + 256 * 12
    assert Pricing().cost_micros("anthropic", "claude-sonnet-4-5-20250929", big) == round(expected)


@settings(max_examples=60, deadline=None)
@given(
    inp=st.integers(0, 400_000),
    out=st.integers(0, 64_000),
    read=st.integers(0, 300_000),
    write=st.integers(0, 100_000),
)
def test_compiled_tiers_match_genai_prices(inp: int, out: int, read: int, write: int) -> None:
    """The per-band rates compiled once give what genai-prices computes per call."""
    usage = Usage(
        input_tokens=inp, output_tokens=out, cache_read_tokens=read, cache_creation_tokens=write
    )
    reference = calc_price(
        PriceUsage(
            input_tokens=inp + read + write,
            output_tokens=out,
            cache_read_tokens=read,
            cache_write_tokens=write,
        ),
        "claude-sonnet-4-5-20250929",
        provider_id="anthropic",
    )
    expected = int((reference.total_price * 1_000_000).quantize(Decimal(1), ROUND_HALF_UP))
    assert Pricing().cost_micros("anthropic", "claude-sonnet-4-5-20250929", usage) == expected


def _every_compiled_rate() -> list[Rates]:
    pricing = Pricing()
    found: list[Rates] = []
    for kind in ("anthropic", "bedrock", "vertex"):
        for model in sorted(pricing.known_models()):
            compiled = pricing._lookup(kind, model)  # the compiled form
            if isinstance(compiled, Rates):
                found.append(compiled)
            elif isinstance(compiled, TieredRates):
                found += [rates for _, rates in compiled.bands]
    return found


@settings(max_examples=40, deadline=None)
@given(
    inp=st.integers(0, 2_000_000),
    out=st.integers(0, 200_000),
    read=st.integers(0, 2_000_000),
    write=st.integers(0, 500_000),
    write_1h=st.integers(0, 500_000),
)
def test_integer_costs_equal_decimal_costs_for_every_published_rate(
    inp: int, out: int, read: int, write: int, write_1h: int
) -> None:
    """Every published rate is exact in integers, and the integer cost is Decimal's, rounded
    half up."""
    usage = Usage(
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=read,
        cache_creation_tokens=write + write_1h,
        cache_creation_1h_tokens=write_1h,
    )
    rates = _every_compiled_rate()
    assert len(rates) > 20
    for rate in rates:
        assert rate.scaled is not None
        expected = int(rate.micros(usage).quantize(Decimal(1), ROUND_HALF_UP))
        assert rate.cost(usage) == expected


def test_integer_costs_round_half_up_and_fall_back_to_decimal() -> None:
    half = Rates(Decimal("0.5"), Decimal("2.5"), Decimal(0), Decimal(0), Decimal(0))
    assert half.cost(Usage(input_tokens=1)) == 1  # 0.5 rounds up
    assert half.cost(Usage(input_tokens=3)) == 2  # 1.5
    assert half.cost(Usage(output_tokens=1)) == 3  # 2.5
    assert half.cost(Usage(input_tokens=1, output_tokens=1)) == 3  # 3.0
    fine = Decimal("0.0000000000003")  # 13 decimals: not exact in 10^-12 units
    odd = Rates(fine, Decimal(1), Decimal(0), Decimal(0), Decimal(0))
    assert odd.scaled is None
    assert odd.cost(Usage(input_tokens=5_000_000_000_000, output_tokens=2)) == 4  # 1.5 + 2
