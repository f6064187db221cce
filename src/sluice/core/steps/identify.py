"""The first steps, before a byte of the body is read: the declared size, then the key.

A refusal of a known key is still charged to it in the ledger, so the key is identified
before it is judged usable.
"""

from __future__ import annotations

from sluice.core.context import RequestContext
from sluice.core.steps.base import SettleNothing
from sluice.errors import PayloadTooLarge
from sluice.governance.key_cache import KeyCache


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body exceeds the gateway limit of {limit} bytes.",
        meta={"max_body_bytes": limit},
        tips=["Raise server.max_body_bytes, or run /compact to shorten the conversation."],
    )


class DeclaredSize(SettleNothing):
    """Refuse a declared oversize body before reading a byte of it (and before auth)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def admit(self, ctx: RequestContext) -> None:
        declared = ctx.header(b"content-length")
        if declared is None:
            return
        try:
            size = int(declared)
        except ValueError:
            return
        if size > self.limit:
            raise too_large(self.limit)


def presented_key(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """(key, scheme). Bearer wins when both Authorization and x-api-key are sent."""
    bearer: str | None = None
    api_key: str | None = None
    for name, value in headers:
        if name == b"authorization" and bearer is None:
            text = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                bearer = text[7:].strip()
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1").strip()
    if bearer:
        return bearer, "bearer"
    if api_key:
        return api_key, "x-api-key"
    return None, None


class Identify(SettleNothing):
    def __init__(self, keys: KeyCache) -> None:
        self.keys = keys

    async def admit(self, ctx: RequestContext) -> None:
        ctx.key = await self.keys.identify(presented_key(ctx.headers)[0])
        self.keys.check_usable(ctx.key)
