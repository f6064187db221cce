"""A principal over budget: Claude Code prints the 402, and the upstream is never called."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.store.budgets_repo import Budget, BudgetsRepo
from sluice.testing import FakeAnthropic

from claude_cli import run_claude
from support import Gateway

pytestmark = pytest.mark.e2e


async def test_over_budget_principal_gets_402(
    gateway: Gateway, fake: FakeAnthropic, tmp_path: Path
) -> None:
    state = gateway.server.app.services
    assert state.engine is not None
    repo = BudgetsRepo(state.engine)
    await repo.insert(
        Budget(
            id="C" * 26,
            name="alice-cap",
            scope="principal",
            target="alice",
            window="month",
            limit_micros=1,
            on_breach="block",
            created_at=0,
            updated_at=0,
        )
    )
    await state.budgets.refresh()  # as the periodic refresh would
    result = await run_claude(
        ["--bare", "--disable-slash-commands", "--print", "say hi"],
        base_url=gateway.url,
        auth_token=gateway.key,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
        max_retries=None,
    )
    assert result.rc != 0, result.describe()
    assert "402" in result.stdout and "Budget 'alice-cap'" in result.stdout, result.describe()
    assert fake.messages_requests() == []
    rows = await gateway.ledger_rows()
    assert rows and all(r["error_code"] == "budget_exceeded" for r in rows)
