"""The request path's counters and histograms as plain numbers, turned into metric families
only when ``/metrics`` is scraped.

A prometheus_client ``Counter`` or ``Histogram`` child takes a lock and makes three to five
Python calls per increment: with a request's count, two latencies, tokens and cost that was
~21 calls a request, the largest single part of Sluice's per-request overhead after the
stack itself. Here each label set gets one row, a list of floats, bound once; the request
path adds to it in place (the event loop is the only writer). The exposition is the same as
prometheus_client's: ``_total`` and ``_created`` for counters; ``_bucket``, ``_count``,
``_sum`` and ``_created`` for histograms.

Scrapes render in a thread of their own (telemetry/metrics_server.py). Adding a row and
``collect``'s copy of the rows share a lock: copying a dict's items allocates a tuple per
row, an allocation can start a garbage collection, and a finalizer it runs can hand the GIL
to the loop mid-copy ("dictionary changed size during iteration", seen once in CI). Only a
new label set takes the lock; adding to an existing row does not, and a row read while a
request adds to it shows the value before or after.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]
_GO_FLOAT: Callable[[float], str] = floatToGoString  # how prometheus_client writes ``le``


class _Rows:
    """A label set's row, made once; the rows copied for a scrape."""

    def __init__(self, width: int) -> None:
        self.rows: dict[Labels, list[float]] = {}
        self._width = width  # the zeros before ``created``
        self._adding = threading.Lock()

    def row(self, *labels: str) -> list[float]:
        found = self.rows.get(labels)
        if found is None:
            with self._adding:
                found = self.rows.setdefault(labels, [0.0] * self._width + [time.time()])
        return found

    def snapshot(self) -> list[tuple[Labels, list[float]]]:
        with self._adding:
            return list(self.rows.items())


class CounterTable(_Rows, Collector):
    """Rows are ``[value, created]``: add to ``row[0]``."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        super().__init__(1)
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, (value, created) in self.snapshot():
            family.add_metric(labels, value, created=created)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labels)


class HistogramTable(_Rows, Collector):
    """Rows are ``[count per bucket (the last one +Inf)..., sum, created]``: ``observe``."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], bounds: Sequence[float]
    ) -> None:
        self.bounds = tuple(sorted(bounds))
        super().__init__(len(self.bounds) + 2)
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self._les = [_GO_FLOAT(b) for b in (*self.bounds, float("inf"))]

    def observe(self, row: list[float], value: float) -> None:
        # A bucket's bound is inclusive (``le``): the first bound >= value counts it.
        row[bisect_left(self.bounds, value)] += 1
        row[-2] += value

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, row in self.snapshot():
            counts, total, created = row[:-2], row[-2], row[-1]
            cumulative, buckets = 0.0, []
            for le, count in zip(self._les, counts, strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(labels, buckets, total)
            named = dict(zip(self.labels, labels, strict=True))
            family.samples.append(Sample(self.name + "_created", named, created))
        yield family

    def describe(self) -> Iterable[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
