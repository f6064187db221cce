"""One measurement cell: a target (direct, bare relay or Sluice) with one body, one round."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from bodies import BodyCase
from loadgen import Workload, closed_loop, percentile, run_wrk
from procs import Proc

CONCURRENCIES = (1, 16, 64)


@dataclass(frozen=True)
class Plan:
    rounds: int
    rps_seconds: int  # each req/s run (wrk's -d takes whole seconds)
    latency_seconds: float  # each c=1 latency / TTFB run (Python client)
    use_wrk: bool
    loadgen_cpu: int | None  # where wrk runs (taskset); None: not pinned
    # A round in which other processes used more than this share of the machine (any cell) is
    # discarded and measured again, at most ``rounds`` times per body. None: keep every round.
    max_background_pct: float | None = 15.0


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000


def python_rps(url: str, work: Workload, concurrency: int, seconds: float) -> dict[str, Any]:
    res = uvloop.run(closed_loop(url, work, concurrency=concurrency, duration_s=seconds))
    return {
        "rps": res.rps,
        "requests": res.requests,
        "errors": res.errors,
        "p50_ms": _ms(percentile(res.latencies_us, 50)),
        "p99_ms": _ms(percentile(res.latencies_us, 99)),
    }


def _rps(
    url: str, work: Workload, concurrency: int, plan: Plan, scripts: dict[str, Path]
) -> dict[str, Any]:
    if not plan.use_wrk:
        return python_rps(url, work, concurrency, plan.rps_seconds)
    res = run_wrk(
        url,
        work,
        scripts[work.name],
        concurrency=concurrency,
        duration_s=plan.rps_seconds,
        cpu=plan.loadgen_cpu,
    )
    return {
        "rps": res.rps,
        "requests": res.requests,
        "errors": res.non_2xx + res.socket_errors,
        "p50_ms": _ms(res.p50_us),
        "p99_ms": _ms(res.p99_us),
    }


def measure_cell(
    url: str, case: BodyCase, proc: Proc | None, plan: Plan, scripts: dict[str, Path]
) -> dict[str, Any]:
    """req/s at each concurrency (plus proxy CPU per request), c=1 latency, c=1 SSE TTFB."""
    cell: dict[str, Any] = {}
    errors = 0
    for conc in CONCURRENCIES:
        cpu_before = proc.cpu_seconds() if proc else 0.0
        run = _rps(url, case.json, conc, plan, scripts)
        cell[f"rps_c{conc}"] = run["rps"]
        errors += run["errors"]
        if conc == 1:
            cell["wrk_c1_p50_ms"], cell["wrk_c1_p99_ms"] = run["p50_ms"], run["p99_ms"]
        if proc is not None and run["requests"]:
            used = proc.cpu_seconds() - cpu_before
            cell[f"cpu_us_per_req_c{conc}"] = used * 1e6 / run["requests"]

    lat = uvloop.run(closed_loop(url, case.json, concurrency=1, duration_s=plan.latency_seconds))
    cell["p50_ms"] = _ms(percentile(lat.latencies_us, 50))
    cell["p99_ms"] = _ms(percentile(lat.latencies_us, 99))
    cell["latency_samples"] = lat.requests
    errors += lat.errors

    sse = uvloop.run(
        closed_loop(url, case.sse, concurrency=1, duration_s=plan.latency_seconds, stream=True)
    )
    cell["ttfb_p50_ms"] = _ms(percentile(sse.ttfb_us, 50))
    cell["ttfb_p99_ms"] = _ms(percentile(sse.ttfb_us, 99))
    cell["sse_total_p50_ms"] = _ms(percentile(sse.latencies_us, 50))
    cell["sse_rps_c1"] = sse.rps
    errors += sse.errors
    cell["errors"] = errors
    return cell


def warm_up(url: str, case: BodyCase) -> None:
    """Open pools, fill caches (Sluice loads the key on first use), let the JIT-less loop settle."""
    for work, stream in ((case.json, False), (case.sse, True)):
        uvloop.run(closed_loop(url, work, concurrency=16, count=300, stream=stream, warmup=2))
