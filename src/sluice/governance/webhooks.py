"""Budget webhooks: JSON signed with HMAC-SHA256 (or Slack's ``{"text": …}``), sent once per
crossing per window, retried with backoff, entirely off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from typing import Any

import aiohttp
import orjson

from sluice.store.budgets_repo import Budget

log = logging.getLogger("sluice.webhooks")

SIGNATURE_HEADER = "x-sluice-signature"
BACKOFF_S = (0.2, 1.0, 5.0)


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(self, session: aiohttp.ClientSession | None, secret: bytes) -> None:
        self._session = session
        self._secret = secret
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    def notify(self, budget: Budget, window_start: int, kind: str, spent_micros: int) -> None:
        """Send one event (the caller has made sure it is the first for this crossing)."""
        if budget.webhook_url is None or self._session is None:
            return
        payload: dict[str, Any] = {
            "type": f"budget.{kind}",
            "budget_id": budget.id,
            "name": budget.name,
            "scope": budget.scope,
            "target": budget.target,
            "window": budget.window,
            "window_start_ms": window_start,
            "limit_usd": budget.limit_micros / 1e6,
            "spent_usd": spent_micros / 1e6,
            "on_breach": budget.on_breach,
        }
        if budget.webhook_format == "slack":
            verb = "has used 80% of" if kind == "threshold_crossed" else "has exceeded"
            payload = {
                "text": f"Sluice: {budget.scope} {budget.target} {verb} its {budget.window} "
                f"budget (${spent_micros / 1e6:.2f} of ${budget.limit_micros / 1e6:.2f})."
            }
        task = asyncio.get_running_loop().create_task(self._deliver(budget.webhook_url, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        assert self._session is not None
        body = orjson.dumps(payload)
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self._secret, body)}
        for attempt, pause in enumerate((0.0, *BACKOFF_S)):
            await asyncio.sleep(pause)
            try:
                async with self._session.post(url, data=body, headers=headers) as resp:
                    if resp.status < 300:
                        self.delivered += 1
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            log.warning("webhook to %s failed (attempt %d)", url.split("?")[0], attempt + 1)
        self.failed += 1

    async def drain(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
