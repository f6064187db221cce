"""Browser tests of the admin console: a gateway (tracing to the local store) with the admin
listener beside it, driven by Playwright's async API through Debian's Chromium.

``playwright install`` is never run: Chromium comes from apt (scripts/test.sh installs it) and
is launched by path. A missing Chromium fails the tests; it does not skip them.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from sluice.base.clock import SystemClock
from sluice.governance.admin_tokens import TokenAdmin
from sluice.store.admin_tokens_repo import AdminTokensRepo
from sluice.testing import FakeAnthropic
from sluice.testing.admin_server import AdminServer
from sluice.testing.gateway import GatewayServer

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))  # claude_cli

from support import SECRET, make_config

CHROMIUM = os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
WIDTHS = {"desktop": (1280, 800), "phone": (375, 812)}


@dataclass
class Console:
    gateway: GatewayServer
    admin: AdminServer
    tokens: TokenAdmin
    shots: Path  # screenshots of this run

    @property
    def url(self) -> str:
        return self.admin.url

    async def token(
        self, name: str = "browser", role: str = "admin", project: str | None = None
    ) -> str:
        return (await self.tokens.create(name, role, project)).token

    async def shoot(self, page: Page, name: str) -> None:
        """Full-page screenshots of ``page`` at both widths; with SLUICE_CONSOLE_DOCS_IMG set,
        the viewport at 1280 (and 375 for the phone set) also goes to docs/img, compressed."""
        for label, (width, height) in WIDTHS.items():
            await page.set_viewport_size({"width": width, "height": height})
            path = self.shots / f"{name}-{width}.png"
            await page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 1000
            if os.environ.get("SLUICE_CONSOLE_DOCS_IMG") and (
                label == "desktop" or name in PHONE_DOCS
            ):
                await page.screenshot(
                    path=str(REPO / "docs" / "img" / f"console-{name}-{width}.png")
                )
                _compress(REPO / "docs" / "img" / f"console-{name}-{width}.png")
        await page.set_viewport_size({"width": 1280, "height": 800})


PHONE_DOCS = {"keys", "messages"}


def _compress(path: Path) -> None:
    if shutil.which("pngquant"):
        subprocess.run(
            [
                "pngquant",
                "--force",
                "--skip-if-larger",
                "--quality=50-80",
                "--output",
                str(path),
                str(path),
            ],
            check=False,
        )


@pytest.fixture
async def console(
    fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Console]:
    # A KEK, as tests/integration/test_admin_providers.py has it: the admin API seals project
    # credentials with it and the gateway opens them (both read it when they are built).
    monkeypatch.setenv("SLUICE_KEK", base64.b64encode(os.urandom(32)).decode())
    # Tracing on, no OTLP endpoint: spans go to the local trace store the Messages page reads.
    extra = "admin: {port: 0}\ntracing: {enabled: true, flush_interval_ms: 20}"
    config = make_config(tmp_path / "sluice.db", fake.url, extra, refresh_s=5)
    gateway = GatewayServer(config)
    await gateway.start()
    services = gateway.app.services
    admin = AdminServer(
        config,
        counters=lambda: services.budgets.counters,
        circuits=services.circuits,
        gateway_url=lambda: gateway.url,
    )
    await admin.start()
    tokens = TokenAdmin(AdminTokensRepo(services.engine), SECRET.encode(), SystemClock())
    shots = tmp_path / "shots"
    shots.mkdir()
    try:
        yield Console(gateway, admin, tokens, shots)
    finally:
        await admin.stop()
        await gateway.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (scripts/test.sh)"
        )
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def sign_in(browser: Browser, console: Console, token: str) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.url)
    page = await context.new_page()
    await page.goto(console.url + "/")
    assert page.url.endswith("/signin")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/keys")
    return page
