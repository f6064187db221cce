"""The admin console in a real browser (issue #15): sign in, mint a key and copy its export
lines, use that key from the real Claude Code CLI, see the turn and its tree in Messages,
watch a budget fill, edit a key's config, read spend and audit; set a project's provider
credential and see the gateway use it; the one-time link; CSRF."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from conftest import Console, sign_in
from sluice.admin.console import signin_link
from sluice.base.clock import SystemClock
from sluice.testing import FakeAnthropic, FakeUsage, Reply, Scenario, TextBlock
from sluice.testing.scenarios import ToolUseBlock

from admin_support import BODY
from claude_cli import run_claude
from support import SECRET

pytestmark = pytest.mark.e2e
PRINT = ["--bare", "--disable-slash-commands", "--print"]
WEB_KEY = "sk-ant-web-project-own-key-0123456789-WXYZ"
USAGE = FakeUsage(input_tokens=40, output_tokens=30, cache_read_input_tokens=1000)


async def _mint(page: Page) -> tuple[str, str]:
    """Mint alice's key in the form; returns (the export lines as shown, the secret)."""
    form = page.get_by_role("region", name="Mint a key")
    await form.get_by_label("Name", exact=True).fill("alice-laptop")
    await form.get_by_label("Project").fill("web")
    await form.get_by_label("Principal").fill("alice")
    await form.get_by_role("button", name="Mint key").click()
    await expect(page.get_by_role("heading", name="The secret, shown this once")).to_be_visible()
    exports = await page.locator("#exports").inner_text()
    secret = (await page.locator("#secret").inner_text()).strip()
    return exports, secret


async def _create_budget(page: Page) -> None:
    await page.goto(page.url.split("/keys")[0] + "/budgets")
    await page.get_by_label("Scope").select_option("principal")
    await page.get_by_label("Target (name or key id)").fill("alice")
    await page.get_by_label("Limit (USD)").fill("5")
    await page.get_by_label("Name (optional)").fill("alice daily")
    await page.get_by_role("button", name="Create budget").click()
    await page.wait_for_url("**/budgets")
    await expect(page.locator(".budget .spent-usd")).to_have_text("$0.0000")


async def _claude_turn(fake: FakeAnthropic, console: Console, secret: str, tmp: Path) -> None:
    marker = tmp / "work" / "console-marker"
    tool = ToolUseBlock("Bash", {"command": f"touch {marker}", "description": "Make a marker"})
    fake.script(
        Scenario(Reply(blocks=[TextBlock("I'll run that."), tool], usage=USAGE)),
        Scenario(Reply(blocks=[TextBlock("The marker exists.")], usage=USAGE)),
        Scenario(Reply(blocks=[TextBlock("Bye now.")])),
    )
    result = await run_claude(
        [*PRINT, "create the marker", "--allowedTools", "Bash", "--session-id", str(uuid.uuid4())],
        base_url=console.gateway.url,
        auth_token=secret,
        cwd=tmp / "work",
        home=tmp / "home",
    )
    assert result.rc == 0, result.describe()
    assert marker.exists(), "Claude Code did not run the Bash tool"
    services = console.gateway.app.services
    await services.ledger.flush()
    assert await services.telemetry.flush()


async def test_token_sign_in_mint_claude_code_turn_messages_budget(
    browser: Browser, console: Console, fake: FakeAnthropic, tmp_path: Path
) -> None:
    page = await sign_in(browser, console, await console.token())
    await console.shoot(page, "keys-empty")
    exports, secret = await _mint(page)
    assert exports.splitlines() == [
        f"export ANTHROPIC_BASE_URL={console.gateway.url}",
        f"export ANTHROPIC_AUTH_TOKEN={secret}",
    ]
    assert re.fullmatch(r"lw_vk_live_\S+", secret)
    assert "direnv" in await page.locator("#envrc").inner_text()
    await page.get_by_role("button", name="Copy export lines").click()
    await expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    assert await page.evaluate("navigator.clipboard.readText()") == exports
    await console.shoot(page, "minted")
    content = await page.content()
    assert console.admin.url not in content or "sl_adm_" not in content  # no admin token in page

    await _create_budget(page)
    await _claude_turn(fake, console, secret, tmp_path)

    await page.reload()  # the budget filled: the turn's two model calls were priced
    spent = await page.locator(".budget .spent-usd").inner_text()
    assert float(spent.lstrip("$")) > 0, spent
    await console.shoot(page, "budgets")

    await page.get_by_role("link", name="Messages").click()
    await expect(page.get_by_role("heading", name="claude-code")).to_be_visible()
    await console.shoot(page, "messages")
    await page.locator("a.turn-link").first.click()
    tree = page.get_by_role("table", name="Span tree")
    names = [n.strip() for n in await tree.locator(".span-name").all_inner_texts()]
    assert names[0].startswith("invoke_agent"), names
    assert sum(n.startswith("└ chat ") for n in names) == 2, names
    assert any(n.startswith("└ execute_tool Bash") for n in names), names
    await console.shoot(page, "turn")

    await page.get_by_role("link", name="Spend").click()
    share = await page.locator("#cache-share").inner_text()
    assert share != "—" and float(share.rstrip("%")) > 50, share  # 1000 of 1040 per call
    await console.shoot(page, "spend")

    await page.get_by_role("link", name="Keys").click()
    await console.shoot(page, "keys")
    await page.get_by_role("link", name="alice-laptop").click()
    await _edit_config(page)
    await console.shoot(page, "key-detail")

    await page.get_by_role("link", name="Audit").click()
    await expect(page.locator("table.audit")).to_contain_text("keys.create")
    await expect(page.locator("table.audit")).to_contain_text("budgets.create")
    await console.shoot(page, "audit")
    assert "sl_adm_" not in await page.content()


async def _edit_config(page: Page) -> None:
    """A bad config is refused with the problem shown at the textarea; a good one saved."""
    box = page.get_by_label("Config document")
    await box.fill("policy_rules:\n  tools:\n    deny: 12\n")
    await page.get_by_role("button", name="Save config").click()
    await expect(box).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#config-error")).to_contain_text("config.policy_rules")
    await box.fill("policy_rules: {tools: {deny: ['^Bash$']}")
    await page.get_by_role("button", name="Save config").click()
    await expect(page.locator("#config-error")).to_contain_text("not valid YAML or JSON")
    await box.fill("policy_rules:\n  tools:\n    deny: ['^Bash$']\n")
    await page.get_by_role("button", name="Save config").click()
    await expect(page.get_by_role("status")).to_contain_text("config saved")
    await expect(box).to_have_value(re.compile(r"\^Bash\$"))


async def test_one_time_link_signs_in_once(browser: Browser, console: Console) -> None:
    services = console.gateway.app.services
    link = await signin_link.issue_if_first_start(services.engine, SECRET.encode(), SystemClock())
    assert link is not None
    again = await signin_link.issue_if_first_start(services.engine, SECRET.encode(), SystemClock())
    assert again is not None  # links alone do not count as an admin token
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{console.url}/signin/{link}")
    await page.wait_for_url("**/keys")
    await expect(page.locator(".who")).to_contain_text("console (signed in by link)")
    await console.shoot(page, "signed-in-by-link")
    # Now a usable admin token exists (the session's): no link on the next start.
    assert (
        await signin_link.issue_if_first_start(services.engine, SECRET.encode(), SystemClock())
        is None
    )

    other = await (await browser.new_context()).new_page()
    response = await other.goto(f"{console.url}/signin/{link}")
    assert response is not None and response.status == 401  # single use
    await expect(other.get_by_role("alert")).to_contain_text("used already, or it expired")
    await console.shoot(other, "signin-link-used")


async def test_csrf_and_cookie_rules(browser: Browser, console: Console) -> None:
    page = await sign_in(browser, console, await console.token())
    cookies = await page.context.cookies()
    [session] = [c for c in cookies if c["name"] == "sluice_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert "sl_adm_" not in session["value"]
    # A form post without the session's CSRF token is refused, and so is an API mutation.
    refused = await page.request.post(f"{console.url}/keys", form={"name": "x"})
    assert refused.status == 403
    api = await page.request.post(f"{console.url}/api/v1/keys", data={"name": "x"})
    assert api.status == 403
    assert (await page.request.get(f"{console.url}/api/v1/keys")).status == 200  # reads are fine
    # Signing out ends the page's session; a forged cookie is no session.
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/signin")
    await console.shoot(page, "signin")
    await page.context.add_cookies([{**session, "value": session["value"][:-3] + "AAA"}])
    assert (await page.request.get(f"{console.url}/api/v1/keys")).status == 401


async def test_viewer_reads_only_and_providers(browser: Browser, console: Console) -> None:
    page = await sign_in(browser, console, await console.token("auditor", "viewer"))
    await expect(page.get_by_role("button", name="Mint key")).to_have_count(0)
    await page.get_by_role("link", name="Providers").click()
    card = page.get_by_role("region", name="anthropic-primary")
    await expect(card).to_contain_text("closed")  # the breaker, read from the gateway in-process
    await page.get_by_label("Project", exact=True).fill("web")
    await page.get_by_role("button", name="Show").click()
    await expect(card).to_contain_text("Uses the server's credential.")
    await expect(page.get_by_role("button", name="Set credential")).to_have_count(0)
    await expect(page.get_by_role("button", name="Test connection")).to_have_count(0)


async def _infer(console: Console, key: str) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{console.gateway.url}/v1/messages", data=BODY, headers={"x-api-key": key}) as r,
    ):
        await r.read()
        return r.status


async def test_set_a_project_credential(
    browser: Browser, console: Console, fake: FakeAnthropic
) -> None:
    page = await sign_in(browser, console, await console.token())
    _, secret = await _mint(page)  # a key of project "web"
    await page.get_by_role("link", name="Providers").click()
    await page.get_by_role("link", name="web", exact=True).click()  # a project with keys
    await expect(page.get_by_label("Project", exact=True)).to_have_value("web")
    card = page.get_by_role("region", name="anthropic-primary")
    await expect(card).to_contain_text("Uses the server's credential.")
    # Refused by the API's validation (blank after trimming), shown in place in the card.
    await card.get_by_label("API key").fill("   ")
    await card.get_by_role("button", name="Set credential").click()
    await expect(card.get_by_role("alert")).to_contain_text("invalid anthropic credential")
    await expect(card.get_by_label("API key")).to_have_attribute("aria-invalid", "true")

    await card.get_by_label("API key").fill(WEB_KEY)
    await card.get_by_role("button", name="Set credential").click()
    await expect(card.get_by_role("status")).to_contain_text("credential saved")
    await expect(card.locator(".last4")).to_have_text("…WXYZ")
    await expect(card).to_contain_text("by browser (console)")
    assert WEB_KEY not in await page.content() and WEB_KEY[:-4] not in await page.content()

    await card.get_by_role("button", name="Test connection").click()
    await expect(card.locator(".test-result")).to_have_text("Connection ok (project credential).")
    await console.shoot(page, "providers")
    assert WEB_KEY not in await page.content()

    # A key of the project reaches the upstream with the project's API key, not the server's.
    assert await _infer(console, secret) == 200
    headers = {k.lower(): v for k, v in fake.messages_requests()[-1].headers}
    assert headers["x-api-key"] == WEB_KEY

    page.once("dialog", lambda dialog: dialog.accept())
    await card.get_by_role("button", name="Remove credential").click()
    await expect(card.get_by_role("status")).to_contain_text("credential removed")
    await expect(card).to_contain_text("Uses the server's credential.")
    assert await _infer(console, secret) == 200
    headers = {k.lower(): v for k, v in fake.messages_requests()[-1].headers}
    assert headers["x-api-key"] != WEB_KEY
