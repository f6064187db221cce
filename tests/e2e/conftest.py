"""Fixtures the traced end-to-end tests share: an OTLP receiver, and a gateway that exports
its spans to it (the ``fake`` upstream comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.testing import FakeAnthropic

from otlp_receiver import OtlpReceiver
from support import Gateway, start_gateway


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver() as server:
        yield server


@pytest.fixture
async def traced(
    fake: FakeAnthropic, receiver: OtlpReceiver, tmp_path: Path
) -> AsyncIterator[Gateway]:
    extra = f"tracing: {{enabled: true, otlp_endpoint: '{receiver.url}', flush_interval_ms: 20}}"
    gw = await start_gateway(tmp_path / "traced.db", fake.url, extra)
    try:
        yield gw
    finally:
        await gw.server.stop()
