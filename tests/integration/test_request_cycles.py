"""A finished request leaves no reference cycle behind: its context, body and response facts
are freed by reference counting when the handler returns, not by the cycle collector.

The collector's passes cost ~5 % of a request's CPU while each request left two dozen objects
in cycles (its context with a closure over it, the disconnect watch's bound method, a timeout
block's timer): every pass traversed the requests in flight and those waiting to be found.
With the collector disabled here, a cycle keeps its request context alive, and the test finds
it among the live objects.
"""

from __future__ import annotations

import gc
from typing import TypeVar

import aiohttp
from test_relay import client_headers

from sluice.base.heap import GC_YOUNG_THRESHOLD
from sluice.base.lazy_timers import Deadline
from sluice.core.context import RequestContext
from sluice.testing import FakeAnthropic, scenario_by_name

from support import Gateway

T = TypeVar("T")

BODY = (
    b'{"model":"claude-haiku-4-5-20251001","max_tokens":16,'
    b'"messages":[{"role":"user","content":"hi"}]'
)


def _alive(kind: type[T]) -> list[T]:
    return [o for o in gc.get_objects() if isinstance(o, kind)]


async def test_finished_requests_leave_no_cycles(gateway: Gateway, fake: FakeAnthropic) -> None:
    # With no cycles to find, the gateway runs the collector's young passes rarely.
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    headers = client_headers(gateway.key)
    messages, chat = "/v1/messages", "/v1/chat/completions"
    cases = [
        (messages, "text", BODY + b"}", headers, 200),
        (messages, "text", BODY + b',"stream":true}', headers, 200),
        (messages, "err529", BODY + b"}", headers, 529),  # an upstream error, relayed
        (messages, "sse_error", BODY + b',"stream":true}', headers, 200),  # error mid-stream
        (messages, "text", b'{"model":1}', headers, 400),  # refused by the gateway
        (messages, "text", BODY + b"}", {**headers, "authorization": "Bearer nope"}, 401),
        (chat, "text", BODY + b"}", headers, 200),  # the OpenAI door, translated both ways
        (chat, "text", BODY + b',"stream":true}', headers, 200),
    ]
    async with aiohttp.ClientSession() as session:
        # One of each first: whatever is built once (caches, pools) is built before counting.
        for path, scenario, body, sent, _ in cases:
            fake.set_default(scenario_by_name(scenario))
            async with session.post(f"{gateway.url}{path}", data=body, headers=sent) as r:
                await r.read()
        gc.collect()
        gc.disable()
        try:
            for path, scenario, body, sent, status in cases * 3:
                fake.set_default(scenario_by_name(scenario))
                async with session.post(f"{gateway.url}{path}", data=body, headers=sent) as r:
                    await r.read()
                    assert r.status == status, (path, scenario)
            await gateway.ledger_rows()  # every row written: nothing still settling
            left = _alive(RequestContext)
            kinds = sorted({(c.status, c.error_code, c.stream) for c in left})
            assert left == [], f"{len(left)} request contexts kept alive by cycles: {kinds}"
            # The upstream header timeout's block: its timer calls back into it.
            assert _alive(Deadline) == []
        finally:
            gc.enable()
