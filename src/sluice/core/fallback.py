"""Sending a request along its provider chain.

Before the first byte reaches the client, a failed attempt is replaced silently by the next
provider in the key's ``fallback.chain``: the attempt must produce response headers *and* its
first SSE event within ``fallback.timeout_ms``, so an upstream that answers 200 and then dies,
or whose first event is an ``overloaded_error``, is switched away from too. After the first
event the stream is sticky (the relay turns a later failure into ``event: error``).

Triggers: ``5xx`` (any 5xx incl. 529), ``rate_limit`` (429), ``timeout``, ``network``. Any other
4xx is the request's fault and is returned as it came. When every attempt fails, the last
upstream error is returned as it came, with ``x-should-retry: false`` once every provider has
been tried (the client's own retries would only repeat ours).

A request without a chain walks a one-element one, under the plan's ``SINGLE`` policy
(core/router.py): no fallback timeout, no read-ahead, no skipping. One path for both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import orjson

from sluice.base.lazy_timers import LazyTimers
from sluice.core.breaker import CircuitBreaker
from sluice.core.context import RequestContext
from sluice.core.router import ChainPolicy, Plan
from sluice.errors import (
    GatewayError,
    NoProviderConfigured,
    ProviderError,
    ProviderTimeout,
    UnsupportedByProvider,
)
from sluice.providers.base import Provider, UpstreamRequest, UpstreamResponse

log = logging.getLogger("sluice.fallback")

_EVENT_END = (b"\n\n", b"\r\n\r\n")
_NO_TIMEOUT = contextlib.nullcontext()  # stateless, so one serves every attempt
_STREAM_ERROR_TRIGGER = {
    "overloaded_error": "5xx",
    "api_error": "5xx",
    "rate_limit_error": "rate_limit",
}

# (from provider, to provider, trigger): metrics and logs.
FallbackObserver = Callable[[str, str, str], None]


def trigger_for_status(status: int) -> str | None:
    """The fallback trigger an upstream status is, or None (success, or a terminal 4xx)."""
    if status == 429:
        return "rate_limit"
    if status >= 500:
        return "5xx"
    return None


class _Failed(Exception):
    def __init__(self, trigger: str, response: UpstreamResponse | None, error: GatewayError | None):
        self.trigger = trigger
        self.response = response
        self.error = error


def _buffered(
    upstream: UpstreamResponse, head: bytes, rest: AsyncIterator[bytes]
) -> UpstreamResponse:
    async def body() -> AsyncIterator[bytes]:
        yield head
        async for chunk in rest:
            yield chunk

    return dataclasses.replace(upstream, body=body())


def _whole(upstream: UpstreamResponse, data: bytes) -> UpstreamResponse:
    """An already-read error response, replayable (the last one is returned to the client)."""

    async def body() -> AsyncIterator[bytes]:
        yield data

    async def read_all() -> bytes:
        return data

    return dataclasses.replace(upstream, body=body(), read_all=read_all, close=lambda _abort: None)


async def _first_event(upstream: UpstreamResponse) -> UpstreamResponse:
    """Read up to the end of the first SSE event; raise ``_Failed`` when the stream ends or
    breaks before it, or when that event is an error a fallback should answer."""
    chunks = upstream.body.__aiter__()
    head = b""
    try:
        while not any(end in head for end in _EVENT_END):
            head += await chunks.__anext__()
    except StopAsyncIteration:
        raise _Failed(
            "network", None, ProviderError("The upstream ended the stream before its first event.")
        ) from None
    except ProviderError as err:
        raise _Failed("network", None, err) from err
    if head.startswith(b"event: error"):
        trigger = _stream_error_trigger(head)
        if trigger is not None:
            return_error = _whole(upstream, head)
            upstream.close(True)  # the error is in hand; the rest of the stream is not wanted
            raise _Failed(trigger, return_error, None)
    return _buffered(upstream, head, chunks)


def _stream_error_trigger(head: bytes) -> str | None:
    _, _, data = head.partition(b"data:")
    try:
        payload = orjson.loads(data.split(b"\n", 1)[0])
        kind = payload["error"]["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "5xx"
    return _STREAM_ERROR_TRIGGER.get(kind)


@dataclass(slots=True)
class _Walk:
    """What a walk along the chain has seen so far."""

    last: _Failed | None = None  # the latest failure that moved on
    skipped: list[str] = field(default_factory=list)  # circuit open
    unsupported: UnsupportedByProvider | None = None
    every_one_tried: bool = True


def upstream_request(ctx: RequestContext) -> UpstreamRequest:
    """The request for the attempt ``ctx.attempts`` counts (already incremented)."""
    return UpstreamRequest(
        endpoint=ctx.endpoint,
        path=ctx.path,
        query=ctx.query,
        headers=ctx.headers,
        body=ctx.body,
        model=ctx.model_sent,
        stream=ctx.stream,
        attempt=ctx.attempts,
        ingress=ctx.ingress,
        client_body=None if ctx.door is None or ctx.content_edited else ctx.received_body,
        client_model=ctx.door_model if ctx.model_sent == ctx.model_requested else None,
    )


class FallbackSender:
    """Sends a request along its plan's chain, to the first provider that answers."""

    def __init__(
        self, breakers: dict[str, CircuitBreaker], observer: FallbackObserver | None = None
    ) -> None:
        self.breakers = breakers
        self.observer = observer
        self._timers = LazyTimers()  # fallback.timeout_ms, without a loop timer per attempt

    async def send(self, ctx: RequestContext, plan: Plan) -> UpstreamResponse:
        """The first good answer along ``plan.providers``, else the last failure (a response
        returned as it came, or its ``GatewayError`` raised). Records on ``ctx`` who answered
        (``provider_id``, ``provider_kind``, ``upstream_model``), ``attempts``,
        ``attempt_log`` and the fallback-count response header."""
        policy, chain = plan.policy, plan.providers
        limit = policy.max_attempts or len(chain)
        walk = _Walk()
        for provider in chain:
            if ctx.attempts >= limit:
                walk.every_one_tried = False
                break
            if not self._eligible(ctx, provider, policy, walk):
                continue
            try:
                upstream = await self._judged(self._begin(ctx, provider, walk), provider, policy)
            except UnsupportedByProvider as err:
                if not policy.route_around:
                    raise
                # This upstream can't express the request (nothing was sent): skip it. The
                # 400 is the answer only when no other provider could take the request.
                ctx.attempts -= 1
                ctx.attempt_log.append(f"{provider.id}:unsupported")
                walk.unsupported = walk.unsupported or err
                continue
            except _Failed as failed:
                if not self._moves_on(ctx, provider, failed, policy):
                    _count_fallbacks(ctx)
                    return self._give_up(failed, exhausted=False)
                walk.last = failed
                continue
            ctx.attempt_log.append(f"{provider.id}:{upstream.status}")
            _count_fallbacks(ctx)
            return upstream
        if walk.last is None:
            raise walk.unsupported or _no_provider(ctx, walk.skipped)
        _count_fallbacks(ctx)
        return self._give_up(walk.last, exhausted=walk.every_one_tried and len(chain) > 1)

    def _eligible(
        self, ctx: RequestContext, provider: Provider, policy: ChainPolicy, walk: _Walk
    ) -> bool:
        """Whether to call ``provider`` at all; only a policy that routes around trouble
        skips one (no id for the model, or its circuit open)."""
        if not policy.route_around:
            return True
        if ctx.model_sent and provider.model_id_for(ctx.model_sent) is None:
            ctx.attempt_log.append(f"{provider.id}:no_such_model")
            return False
        breaker = self.breakers.get(provider.id)
        if breaker is not None and not breaker.allow():
            ctx.attempt_log.append(f"{provider.id}:circuit_open")
            walk.skipped.append(provider.id)
            return False
        return True

    def _begin(self, ctx: RequestContext, provider: Provider, walk: _Walk) -> UpstreamRequest:
        """Record the attempt on ``ctx`` and build what it sends."""
        if walk.last is not None and self.observer is not None and ctx.provider_id is not None:
            self.observer(ctx.provider_id, provider.id, walk.last.trigger)
        ctx.provider_id, ctx.provider_kind = provider.id, provider.kind
        ctx.upstream_model = provider.model_id_for(ctx.model_sent) if ctx.model_sent else None
        ctx.attempts += 1
        return upstream_request(ctx)

    @staticmethod
    def _moves_on(
        ctx: RequestContext, provider: Provider, failed: _Failed, policy: ChainPolicy
    ) -> bool:
        """Note a failed attempt; whether the walk goes on to the next provider."""
        outcome = failed.response.status if failed.response is not None else failed.trigger
        ctx.attempt_log.append(f"{provider.id}:{outcome}")
        if policy.route_around:
            log.warning("provider %s failed (%s) for %s", provider.id, outcome, ctx.request_id)
        return failed.trigger in policy.triggers

    async def _judged(
        self, request: UpstreamRequest, provider: Provider, policy: ChainPolicy
    ) -> UpstreamResponse:
        """One attempt and its circuit breaker's verdict, whatever the policy: a fallback
        trigger (``_Failed``) is a failure, a status below 400 a success, anything else (a
        terminal 4xx, a request the provider cannot express, a cancel) neither: the probe slot
        is released and the provider is not judged."""
        breaker = self.breakers.get(provider.id)
        try:
            upstream = await self._attempt(request, provider, policy)
        except _Failed:
            if breaker is not None:
                breaker.failure()
            raise
        except BaseException:
            if breaker is not None:
                breaker.release()
            raise
        if breaker is not None:
            if upstream.status < 400:
                breaker.success()
            else:
                breaker.release()  # a terminal 4xx says nothing about the provider
        return upstream

    async def _attempt(
        self, request: UpstreamRequest, provider: Provider, policy: ChainPolicy
    ) -> UpstreamResponse:
        """One provider: a good response (first event already read, when streamed and the
        policy reads ahead), a terminal 4xx, or ``_Failed``."""
        upstream: UpstreamResponse | None = None
        timeout_s = policy.timeout_s
        try:
            # No fallback timeout (the SINGLE policy): skip the Timeout object altogether.
            with _NO_TIMEOUT if timeout_s is None else self._timers.timeout(timeout_s):
                upstream = await provider.send(request)
                trigger = trigger_for_status(upstream.status)
                if trigger is not None:
                    data = await upstream.read_all()
                    upstream.close(False)
                    raise _Failed(trigger, _whole(upstream, data), None)
                if policy.read_ahead and upstream.status == 200 and upstream.is_sse:
                    return await _first_event(upstream)
                return upstream
        except _Failed as failed:
            if failed.response is None and upstream is not None:
                upstream.close(True)
            raise
        except TimeoutError:
            if upstream is not None:
                upstream.close(True)
            raise _Failed(
                "timeout",
                None,
                ProviderTimeout(
                    f"Upstream {provider.id} sent no response and first event within "
                    f"{timeout_s:g}s (fallback.timeout_ms).",
                    meta={"provider": provider.id},
                ),
            ) from None
        except ProviderTimeout as err:
            raise _Failed("timeout", None, err) from err
        except ProviderError as err:
            raise _Failed("network", None, err) from err

    @staticmethod
    def _give_up(failed: _Failed, *, exhausted: bool) -> UpstreamResponse:
        if failed.response is not None:
            if not exhausted:
                return failed.response
            headers = [(k, v) for k, v in failed.response.headers if k != b"x-should-retry"]
            headers.append((b"x-should-retry", b"false"))
            return dataclasses.replace(failed.response, headers=headers)
        error = failed.error or ProviderError("Every provider in the fallback chain failed.")
        if exhausted:
            error.headers["x-should-retry"] = "false"
        raise error


def _count_fallbacks(ctx: RequestContext) -> None:
    """``X-LangWatch-Fallback-Count`` on whatever the client gets, once a fallback happened."""
    if ctx.attempts > 1:
        count = str(ctx.attempts - 1).encode()
        ctx.response_headers.append((b"x-langwatch-fallback-count", count))


def _no_provider(ctx: RequestContext, skipped: list[str]) -> GatewayError:
    if skipped:
        return ProviderError(
            f"No provider can take this request now: the circuit is open for {', '.join(skipped)}.",
            status=503,
            meta={"providers": skipped},
            headers={"retry-after": "5"},
            tips=["See `sluice providers status` or /readyz for the circuit states."],
        )
    return NoProviderConfigured(
        f"No provider in this key's fallback chain serves model '{ctx.model_sent}'.",
        meta={"model": ctx.model_sent},
        tips=["Check the key's fallback.chain and each provider's models."],
    )
