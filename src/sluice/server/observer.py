"""The request path's observers, as one object the exchange calls: traces, metrics and the
access log see every settled request; an unattributed one (no key: mostly 401s) is counted
and logged sampled, never stored."""

from __future__ import annotations

import contextlib
from typing import Any

from sluice.core.context import RequestContext
from sluice.errors import GatewayError
from sluice.telemetry import Telemetry
from sluice.telemetry.access_log import LogSampler, log_request
from sluice.telemetry.metrics import Metrics


class RequestObserver:
    def __init__(self, metrics: Metrics, telemetry: Telemetry, unkeyed_log: LogSampler) -> None:
        self.metrics = metrics
        self.telemetry = telemetry
        self.unkeyed_log = unkeyed_log

    def settled(self, ctx: RequestContext, row: dict[str, Any]) -> None:
        self.telemetry.record(ctx, row)
        self.metrics.observe(ctx, row)
        log_request(ctx, row)

    def unattributed(self, ctx: RequestContext, row: dict[str, Any]) -> None:
        self.metrics.observe(ctx, row)
        if (held_back := self.unkeyed_log.admit()) is not None:
            log_request(ctx, row, held_back)

    def refused(self, err: GatewayError) -> None:
        self.metrics.refused(err)

    def streaming(self, active: bool) -> contextlib.AbstractContextManager[None]:
        return self.metrics.active_stream(active)
