"""The request path's plain counter and histogram rows expose exactly what
prometheus_client's locked Counter and Histogram would for the same observations."""

from __future__ import annotations

import contextlib
import gc
import queue
import re
import sys
import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sluice.telemetry import tally
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


def test_a_row_added_while_a_collection_interrupts_the_copy_waits_for_it() -> None:
    """A garbage collection that starts inside ``collect``'s copy of the rows can run code
    that hands the GIL to the loop (as a finalizer does): the loop adding a row then must
    not change the dict under the copy. A gc callback stands in for that finalizer: each of
    the first few collections that start in the table's own frame lets the writer thread add
    a row, and waits up to half a second for it."""
    registry = CollectorRegistry()
    counter = CounterTable("w", "W.", ("n",))
    registry.register(counter)
    # More rows than CPython keeps spare pairs (2,000): the copy must allocate fresh ones.
    for n in range(5_000):
        counter.row(str(n))[0] += 1
    asks: queue.Queue[int | None] = queue.Queue()
    done: queue.Queue[int] = queue.Queue()
    fired: list[int] = []
    scraper = threading.get_ident()

    def interrupt(phase: str, info: dict[str, Any]) -> None:
        # The frame the collection started in is the table's own, not one it called: a C
        # call there allocated (the copy, or the family before it).
        code = sys._getframe(1).f_code
        if (
            phase == "start"
            and len(fired) < 4
            and threading.get_ident() == scraper
            and code.co_filename == tally.__file__
        ):
            fired.append(len(fired))
            asks.put(fired[-1])
            with contextlib.suppress(queue.Empty):  # the writer waits for the copy to end
                done.get(timeout=0.5)

    def writer() -> None:
        while (n := asks.get()) is not None:
            counter.row(f"late{n}")[0] += 1
            done.put(n)

    thread = threading.Thread(target=writer)
    thread.start()
    threshold = gc.get_threshold()
    gc.callbacks.append(interrupt)
    gc.set_threshold(1)
    try:
        generate_latest(registry)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(interrupt)
        asks.put(None)
        thread.join()
    assert len(fired) >= 2
    scraped = generate_latest(registry).decode()
    assert all(f'w_total{{n="late{n}"}} 1.0' in scraped for n in fired)
