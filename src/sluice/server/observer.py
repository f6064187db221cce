"""The request path's observers, as one object the exchange calls: traces, metrics and the
access log see every settled request; an unattributed one (no key: mostly 401s) is counted
and logged sampled, never stored."""

from __future__ import annotations

import contextlib

from sluice.base.settlement import Settlement
from sluice.core.context import RequestContext
from sluice.telemetry import Telemetry
from sluice.telemetry.access_log import LogSampler, log_request
from sluice.telemetry.metrics import Metrics


class RequestObserver:
    def __init__(self, metrics: Metrics, telemetry: Telemetry, unkeyed_log: LogSampler) -> None:
        self.metrics = metrics
        self.telemetry = telemetry
        self.unkeyed_log = unkeyed_log

    def settled(self, ctx: RequestContext, settlement: Settlement) -> None:
        self.telemetry.record(ctx, settlement)
        self.metrics.observe(settlement)
        log_request(settlement)

    def unattributed(self, ctx: RequestContext, settlement: Settlement) -> None:
        self.metrics.observe(settlement)
        if (held_back := self.unkeyed_log.admit()) is not None:
            log_request(settlement, held_back)

    def streaming(self, active: bool) -> contextlib.AbstractContextManager[None]:
        return self.metrics.active_stream(active)
