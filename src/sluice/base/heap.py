"""The cycle collector, set for serving once a process has started.

Start-up builds a large, long-lived heap (modules, pydantic models, SQLAlchemy, the
OpenTelemetry SDK). ``gc.freeze()`` moves it out of the collector's view, so a full pass no
longer traverses it: in the gateway that was worth 10-15 % of throughput, and in the span sink
a full pass over 127k start-up objects took most of a second. Then, since a request leaves no
reference cycle (tests/integration/test_request_cycles.py), a young pass finds nothing and only
traverses the requests in flight: at CPython's default threshold (700) it ran every ~25
requests, ~5 % of the CPU with the cycles, ~2 % without. Garbage from a cycle elsewhere (an
error's traceback) is still collected, within the higher threshold.
"""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 10_000  # objects allocated (net) before a young-generation pass


def freeze_startup_heap() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
