"""The request path's counters and histograms as plain numbers, turned into metric families
only when ``/metrics`` is scraped.

A prometheus_client ``Counter`` or ``Histogram`` child takes a lock and makes three to five
Python calls per increment: with a request's count, two latencies, tokens and cost that was
~21 calls a request, the largest single part of Sluice's per-request overhead after the
stack itself. Here each label set gets one row, a list of floats, bound once; the request
path adds to it in place (the event loop is the only writer). The exposition is the same as
prometheus_client's: ``_total`` and ``_created`` for counters; ``_bucket``, ``_count``,
``_sum`` and ``_created`` for histograms.

Scrapes render in a thread of their own (telemetry/metrics_server.py): ``collect`` copies a
table's rows in one C call first, so the loop may add rows meanwhile, and a row read while a
request adds to it shows the value before or after, as with a lock.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]
_GO_FLOAT: Callable[[float], str] = floatToGoString  # how prometheus_client writes ``le``


class CounterTable(Collector):
    """Rows are ``[value, created]``: add to ``row[0]``."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.rows: dict[Labels, list[float]] = {}

    def row(self, *labels: str) -> list[float]:
        found = self.rows.get(labels)
        if found is None:
            found = self.rows[labels] = [0.0, time.time()]
        return found

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, (value, created) in list(self.rows.items()):
            family.add_metric(labels, value, created=created)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labels)


class HistogramTable(Collector):
    """Rows are ``[count per bucket (the last one +Inf)..., sum, created]``: ``observe``."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], bounds: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.bounds = tuple(sorted(bounds))
        self._les = [_GO_FLOAT(b) for b in (*self.bounds, float("inf"))]
        self.rows: dict[Labels, list[float]] = {}

    def row(self, *labels: str) -> list[float]:
        found = self.rows.get(labels)
        if found is None:
            found = self.rows[labels] = [0.0] * (len(self.bounds) + 2) + [time.time()]
        return found

    def observe(self, row: list[float], value: float) -> None:
        # A bucket's bound is inclusive (``le``): the first bound >= value counts it.
        row[bisect_left(self.bounds, value)] += 1
        row[-2] += value

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, row in list(self.rows.items()):
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
