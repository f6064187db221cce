"""Read the body (size-capped even without a Content-Length), start watching for the
client going away, then peek the few fields the gateway needs from a parsed copy."""

from __future__ import annotations

from sluice.base.asgi import Receive
from sluice.core.context import RequestContext
from sluice.core.peek import peek_messages_body
from sluice.core.steps.base import SettleNothing
from sluice.core.steps.identify import too_large


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes."""
    first = await receive()
    body = first.get("body", b"")
    if not first.get("more_body", False):
        if len(body) > limit:
            raise too_large(limit)
        return bytes(body)
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


class ReadBody(SettleNothing):  # the watch stops before settling (``Exchange.finish``)
    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def admit(self, ctx: RequestContext) -> None:
        assert ctx.receive is not None
        ctx.body = ctx.received_body = await read_body(ctx.receive, self.limit)
        if ctx.disconnect is not None:
            ctx.disconnect.start(ctx.client_gone)
        if ctx.door is not None:
            ctx.door.inbound(ctx)  # now a Messages request, whichever door it came by
        peek_messages_body(ctx)
