"""Model names are the client's: the price lookup cache must not grow with invented ones
(genai-prices matches by prefix, so ``claude-sonnet-4-5-<anything>`` is priced)."""

from __future__ import annotations

import logging

import pytest

from sluice.base.usage import Usage
from sluice.pricing import Pricing

LIMIT = 200


def test_invented_names_leave_the_lookup_cache_bounded(caplog: pytest.LogCaptureFixture) -> None:
    pricing = Pricing(cache_max=LIMIT)
    usage = Usage(input_tokens=10, output_tokens=10)
    real = pricing.cost_micros("anthropic", "claude-sonnet-4-5", usage)
    assert real is not None
    caplog.set_level(logging.WARNING, logger="sluice.pricing")
    for n in range(LIMIT * 3):
        # Priced through the prefix, and unpriced: both kinds of invented name.
        assert pricing.cost_micros("anthropic", f"claude-sonnet-4-5-{n}", usage) == real
        assert pricing.cost_micros("anthropic", f"made-up-{n}", usage) is None
        if n % 50 == 0:  # a model in use stays cached however many names go by
            assert pricing.cost_micros("anthropic", "claude-sonnet-4-5", usage) == real
    assert pricing.cached <= LIMIT
