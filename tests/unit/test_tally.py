"""The request path's plain counter and histogram rows expose exactly what
prometheus_client's locked Counter and Histogram would for the same observations."""

from __future__ import annotations

import re
import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sluice.telemetry.tally import CounterTable, HistogramTable

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


def _exposition(registry: CollectorRegistry) -> str:
    # Creation times differ by when each side made its row: compare everything else.
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate_latest(registry).decode())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.floats(min_value=0, max_value=500, allow_nan=False),
            st.integers(min_value=0, max_value=10**9),
        ),
        max_size=40,
    )
)
def test_rows_expose_what_prometheus_client_would(
    observations: list[tuple[str, float, int]],
) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = CounterTable("x_tokens", "Tokens.", ("model",))
    histogram = HistogramTable("x_latency_seconds", "Latency.", ("model",), BOUNDS)
    ours.register(counter)
    ours.register(histogram)
    reference_counter = Counter("x_tokens", "Tokens.", ["model"], registry=theirs)
    reference_histogram = Histogram(
        "x_latency_seconds", "Latency.", ["model"], buckets=BOUNDS, registry=theirs
    )
    for model, seconds, tokens in observations:
        counter.row(model)[0] += tokens
        reference_counter.labels(model).inc(tokens)
        histogram.observe(histogram.row(model), seconds)
        reference_histogram.labels(model).observe(seconds)
    assert _exposition(ours) == _exposition(theirs)


def test_a_bound_is_inclusive_and_past_the_last_is_inf() -> None:
    histogram = HistogramTable("y_seconds", "Y.", (), (1.0, 2.0))
    row = histogram.row()
    for value in (1.0, 1.5, 2.0, 9.0):
        histogram.observe(row, value)
    assert row[:3] == [1.0, 2.0, 1.0] and row[3] == 13.5


def test_a_scrape_in_another_thread_reads_while_rows_are_added() -> None:
    registry = CollectorRegistry()
    counter = CounterTable("z", "Z.", ("n",))
    registry.register(counter)
    stop = threading.Event()
    errors: list[BaseException] = []

    def scrape() -> None:
        while not stop.is_set():
            try:
                generate_latest(registry)
            except BaseException as exc:  # pragma: no cover - the failure being tested
                errors.append(exc)
                return

    reader = threading.Thread(target=scrape)
    reader.start()
    try:
        for n in range(20_000):
            counter.row(str(n))[0] += 1
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert 'z_total{n="19999"} 1.0' in generate_latest(registry).decode()
