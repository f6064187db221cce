"""Outage bookkeeping: each feature's configured outcome, what /readyz calls degraded, and
one log line per feature per interval (not one per request)."""

from __future__ import annotations

import logging

import pytest

from sluice.config.models import RedisOutageConfig
from sluice.governance.outage import LOG_EVERY_S, RECENT_S, Outage


def test_defaults_and_degraded_features(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    outage = Outage(RedisOutageConfig(rate_limits="closed"), monotonic=lambda: now[0])
    assert outage.degraded(None) == {}  # no Redis configured
    assert outage.degraded(True) == {}
    assert outage.degraded(False) == {
        "budgets": "closed",
        "rate_limits": "closed",
        "verdicts": "open",
        "webhook_dedupe": "open",
    }
    with caplog.at_level(logging.ERROR, logger="sluice.redis"):
        for _ in range(100):
            assert outage.failed("verdicts", ConnectionError("down")) == "open"
        assert len(caplog.records) == 1
        assert "verdicts fail open" in caplog.records[0].getMessage()
        now[0] += LOG_EVERY_S
        outage.failed("verdicts", ConnectionError("down"))
        assert len(caplog.records) == 2
    # Redis answers a ping again, but a feature that failed moments ago is still named.
    assert outage.degraded(True) == {"verdicts": "open"}
    now[0] += RECENT_S
    assert outage.degraded(True) == {}
