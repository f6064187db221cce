"""POST /v1/messages and /v1/messages/count_tokens: the hot path, as a plain ASGI handler.

Order: size (declared) -> auth -> body -> peek -> provider -> relay -> settle. Every request
of an identified key gets a ledger row, including refusals and client disconnects; a request
never tied to a key (401s: a flood of them must not grow the database) is counted in metrics
and logged sampled instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sluice.base.asgi import Receive, Scope, Send, send_error, send_json
from sluice.base.clock import new_request_id
from sluice.core.context import RequestContext
from sluice.core.peek import peek_messages_body
from sluice.core.relay import relay_error_safe
from sluice.core.settle import ledger_row
from sluice.errors import GatewayError, InternalError
from sluice.governance.budgets import BYTES_PER_TOKEN, Admitted
from sluice.governance.rate_limits import Lease
from sluice.server.asgi_io import check_content_length, presented_key, read_body
from sluice.server.state import AppState
from sluice.telemetry.access_log import log_request

log = logging.getLogger("sluice")

CLIENT_CLOSED = 499  # nginx's convention: the client went away before the response ended


class _Disconnect:
    """Watches ``receive`` once the body is read; cancels the handler when the client goes,
    so an upstream that is still working (or hanging) is cancelled at once."""

    __slots__ = ("ctx", "finished", "task")

    def __init__(self, ctx: RequestContext, task: asyncio.Task[object]) -> None:
        self.ctx = ctx
        self.task = task
        self.finished = False

    async def watch(self, receive: Receive) -> None:
        message = await receive()
        if message["type"] == "http.disconnect" and not self.finished:
            self.ctx.client_disconnected = True
            self.task.cancel("client disconnected")


async def handle_proxy(
    state: AppState, scope: Scope, receive: Receive, send: Send, endpoint: str
) -> None:
    assert state.keys is not None and state.ledger is not None
    ctx = RequestContext(
        request_id=new_request_id(),
        endpoint=endpoint,
        path=scope["path"],
        query=scope["query_string"].decode("latin-1"),
        headers=scope["headers"],
        started=time.perf_counter(),
        started_ms=state.clock.now_ms(),
    )
    task = asyncio.current_task()
    assert task is not None
    watcher: asyncio.Task[None] | None = None
    lease: Lease | None = None
    admitted: Admitted | None = None
    settled = False
    if state.config.ledger.acknowledge_after_commit:

        async def before_end() -> None:
            nonlocal settled
            settled = True
            assert state.ledger is not None
            await state.ledger.commit(_settle(state, ctx, lease, admitted, record=False))

        ctx.before_end = before_end
    disconnect = _Disconnect(ctx, task)
    limit = state.config.server.max_body_bytes
    try:
        try:
            check_content_length(scope, limit)
            # Identify first, so a refusal of a known key is still charged to it in the ledger.
            ctx.key = await state.keys.identify(presented_key(scope)[0])
            state.keys.check_usable(ctx.key)
            ctx.body = ctx.received_body = await read_body(receive, limit)
            watcher = asyncio.get_running_loop().create_task(disconnect.watch(receive))
            peek_messages_body(ctx)
            billable = endpoint == "messages"
            if billable:
                estimate = len(ctx.body) // BYTES_PER_TOKEN + (ctx.max_tokens or 0)
                lease = await state.rate_limits.admit(
                    ctx.key.id, ctx.key.config.rate_limits, estimate, ctx.request_id
                )
            guard = await state.pipeline.admit(ctx)
            provider = state.router.pick(ctx)
            ctx.provider_id, ctx.provider_kind = provider.id, provider.kind
            if billable and state.budgets.applicable(ctx.key):
                worst = state.budgets.worst_case_micros(
                    provider.kind, ctx.model_sent or "", len(ctx.body), ctx.max_tokens
                )
                admitted = await state.budgets.admit(ctx.request_id, ctx.key, worst)
                if admitted is not None and admitted.warnings:
                    warning = ",".join(admitted.warnings).encode()
                    ctx.response_headers.append((b"x-langwatch-budget-warning", warning))
            if not billable:
                counter = state.router.counter_for(ctx)
                if counter is None:
                    await _send_estimate(send, ctx)
                    return
                ctx.provider_id, ctx.provider_kind = counter.id, counter.kind
                upstream = await state.fallback.send_one(ctx, counter)
            elif (chain := state.router.chain(ctx)) is not None:
                assert ctx.key is not None
                upstream = await state.fallback.send_chain(ctx, chain, ctx.key.config.fallback)
            else:
                upstream = await state.fallback.send_one(ctx, provider)
            # --- metrics: active streams ---
            with state.metrics.active_stream(upstream.status == 200 and upstream.is_sse):
                await relay_error_safe(ctx, upstream, send, guard)
            # --- end metrics ---
            await state.pipeline.remember(ctx, guard)
        except GatewayError as err:
            ctx.status = err.status
            ctx.error_code = err.code
            state.metrics.refused(err)  # metrics: rate-limit dimension
            await send_error(send, err, ctx.request_id)
    except asyncio.CancelledError:
        if not ctx.client_disconnected:
            raise
        task.uncancel()
    except ConnectionResetError:
        ctx.client_disconnected = True
    except Exception:
        log.exception("unhandled error", extra={"request_id": ctx.request_id})
        if ctx.status == 0:
            internal = InternalError(
                "Sluice hit an internal error; see its logs for this request id."
            )
            ctx.status, ctx.error_code = internal.status, internal.code
            await send_error(send, internal, ctx.request_id)
    finally:
        disconnect.finished = True
        if watcher is not None:
            watcher.cancel()
        if ctx.client_disconnected and ctx.status in (0, 200):
            ctx.status = CLIENT_CLOSED if ctx.status == 0 else 200
        if not settled:
            _settle(state, ctx, lease, admitted)


async def _send_estimate(send: Send, ctx: RequestContext) -> None:
    """count_tokens when no provider that serves the model can count: a conservative estimate
    from the body size, marked as one (never a silent under-count)."""
    estimate = -(-len(ctx.body) // BYTES_PER_TOKEN)
    ctx.status = 200
    await send_json(
        send,
        200,
        {"input_tokens": estimate},
        ctx.request_id,
        [(b"x-langwatch-token-count", b"estimated")],
    )


def _settle(
    state: AppState,
    ctx: RequestContext,
    lease: Lease | None,
    admitted: Admitted | None,
    *,
    record: bool = True,
) -> dict[str, Any]:
    """Runs once for every request, whatever happened: the ledger row, then the counters."""
    assert state.ledger is not None
    row = ledger_row(ctx, time.perf_counter(), state.pricing)
    if ctx.key is None:  # unattributed (mostly 401): no row, a metric and a sampled log line
        state.metrics.observe(ctx, row)
        if (held_back := state.unkeyed_log.admit()) is not None:
            log_request(ctx, row, held_back)
        return row
    if record:
        state.ledger.record(row)
    # In-process counters settle inline; remote ones (Redis) off the response path.
    if admitted is not None and not state.budgets.settle_now(admitted, row["budget_micros"]):
        state.spawn(state.budgets.settle(admitted, row["budget_micros"]))
    if lease is not None:
        usage = ctx.facts.usage
        actual = usage.total_input_tokens + usage.output_tokens
        if not state.rate_limits.release_now(lease, actual):
            state.spawn(state.rate_limits.release(lease, actual))
    state.telemetry.record(ctx, row)
    # --- metrics + access log (telemetry/) ---
    state.metrics.observe(ctx, row)
    log_request(ctx, row)
    # --- end metrics + access log ---
    return row
