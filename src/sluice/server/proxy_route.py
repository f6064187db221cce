"""POST /v1/messages and /v1/messages/count_tokens: the hot path, as a plain ASGI handler.

It builds the request's context, runs the pipeline's steps (core/steps/: size, key, body,
rate limit, policy, resolution, budget, dispatch), relays the answer, and settles once,
whatever happened. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sluice.base.asgi import Receive, Scope, Send
from sluice.core.context import Door, RequestContext
from sluice.core.disconnect import DisconnectWatch
from sluice.errors import GatewayError, InternalError
from sluice.server.services import Services

log = logging.getLogger("sluice")


async def handle_proxy(
    services: Services,
    scope: Scope,
    receive: Receive,
    send: Send,
    endpoint: str,
    door: Door | None = None,
) -> None:
    exchange = services.exchange
    ctx = RequestContext(
        request_id=exchange.new_request_id(),
        endpoint=endpoint,
        path=scope["path"],
        query=scope["query_string"].decode("latin-1"),
        headers=scope["headers"],
        started=time.perf_counter(),
        started_ms=services.clock.now_ms(),
        receive=receive,
        disconnect=DisconnectWatch(scope, receive),
        door=door,
        ingress=door.name if door is not None else "anthropic",
    )
    if door is not None:
        send = door.outbound(send, ctx)
    exchange.prepare(ctx)
    try:
        try:
            await exchange.admit(ctx)
            await exchange.respond(ctx, send)
        except GatewayError as err:
            await exchange.refuse(ctx, err, send)
    except asyncio.CancelledError:
        if not ctx.client_disconnected:
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
    except ConnectionResetError:
        ctx.client_disconnected = True
    except Exception:
        log.exception("unhandled error", extra={"request_id": ctx.request_id})
        if ctx.status == 0:
            await exchange.refuse(ctx, _internal(), send)
    finally:
        exchange.finish(ctx)


def _internal() -> InternalError:
    return InternalError("Sluice hit an internal error; see its logs for this request id.")
