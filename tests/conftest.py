from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sluice.testing import FakeAnthropic

from support import Gateway, start_gateway


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def gateway(fake: FakeAnthropic, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path / "sluice.db", fake.url)
    try:
        yield gw
    finally:
        await gw.server.stop()
