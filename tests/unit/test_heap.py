"""After start-up a serving process freezes its heap and raises the young threshold
(``base/heap.py``): checked in a fresh interpreter, as the gateway and the span sink run it."""

from __future__ import annotations

import subprocess
import sys

from sluice.base.heap import GC_YOUNG_THRESHOLD

_PROBE = """
import gc
from sluice.base.heap import freeze_startup_heap
import sluice.telemetry.export  # a start-up heap worth freezing (the OpenTelemetry SDK)
before = gc.get_freeze_count()
freeze_startup_heap()
print(before, gc.get_freeze_count(), gc.get_threshold()[0], len(gc.get_objects(0)))
"""


def test_the_start_up_heap_is_frozen_and_young_passes_are_rarer() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout
    before, frozen, threshold, young = map(int, out.split())
    assert before == 0 and frozen > 10_000  # the imported modules left the collector's view
    assert threshold == GC_YOUNG_THRESHOLD > 700
    assert young < 100
