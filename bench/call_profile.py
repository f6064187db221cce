"""Python calls per request, by package: the bare relay against Sluice, under the same load.

py-spy (``profile_summary.py``) says where the time goes; this says how much Python each
request runs, which is what the small-body ratio is made of: every call costs about the same
on this VM whatever it does. Each proxy runs under cProfile, switched on for a window while
wrk loads it (c=16, pinned as in overhead.py), then the calls and their own time are summed by
package (``aiohttp``, ``uvicorn``, ``sluice.core``, ...; ``builtins`` are C functions called
from any of them). cProfile slows everything several times over: read the counts, and the
times only as shares.

    .venv/bin/python bench/call_profile.py [--body small] [--key whole] [--seconds 8] [--top 40]

``--key``: plain (auth + ledger), budgets (2 budgets + rpm) or whole (#12's full pipeline:
policy, 2 budgets and a rate limit on one key). ``--top N`` also lists Sluice's N functions
and C calls (from any package) with the most calls per request.

Not a test: CI never runs it.
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bodies import body_cases
from loadgen import ensure_wrk, write_wrk_script
from overhead import (
    LOADGEN_CPU,
    PROXY_CPU,
    mint_budget_key,
    mint_key,
    mint_whole_key,
    sluice_cmd,
    write_config,
)
from procs import Proc, free_port, start, start_upstream

BENCH = Path(__file__).resolve().parent
# Runs a console script or a file under cProfile: SIGUSR1 starts it, SIGUSR2 stops and dumps.
_WRAPPER = """
import cProfile, os, runpy, signal, sys
profile = cProfile.Profile()
def dump(*_):
    profile.disable()
    profile.dump_stats(os.environ["CALL_PROFILE_OUT"])
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
signal.signal(signal.SIGUSR2, dump)
target, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(target, run_name="__main__")
"""
# One ClientResponse per relayed request in both proxies: the request count.
_PER_REQUEST = ("aiohttp/client_reqrep.py", "__init__", 1)


def _mint_whole(cfg: Path) -> str:
    mint_budget_key(cfg)  # the budgets the whole key's principal and project fall under
    return mint_whole_key(cfg)


_MINTERS = {"plain": mint_key, "budgets": mint_budget_key, "whole": _mint_whole}


def _package(filename: str) -> str:
    if filename == "~":
        return "builtins"
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0]
    if "/sluice/" in filename and "/bench/" not in filename:
        return "sluice." + filename.split("/sluice/")[-1].split("/")[0].removesuffix(".py")
    if "/bench/" in filename:
        return "bench (the relay itself)"
    return "stdlib"


def summarize(path: Path) -> tuple[int, dict[str, tuple[float, float]]]:
    """(requests, package -> (calls, own µs) per request)."""
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    inits = [
        v[1] for k, v in stats.items() if k[0].endswith(_PER_REQUEST[0]) and k[2] == _PER_REQUEST[1]
    ]
    requests = max(inits) if inits else 0
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for (filename, _, _), (_, calls, own_s, _, _) in stats.items():
        row = totals[_package(filename)]
        row[0] += calls
        row[1] += own_s
    per = {name: (c / requests, s / requests * 1e6) for name, (c, s) in totals.items()}
    return requests, per


def _profiled(proxy: Proc, wrk: str, script: Path, seconds: int) -> None:
    url = f"{proxy.url}/v1/messages"
    load = ["taskset", "-c", str(LOADGEN_CPU), wrk, "-t1", "-c16", "-s", str(script)]
    subprocess.run([*load, "-d3s", url], capture_output=True, check=True)  # warm-up
    running = subprocess.Popen([*load, f"-d{seconds + 4}s", url], stdout=subprocess.DEVNULL)
    time.sleep(2)
    os.kill(proxy.popen.pid, signal.SIGUSR1)
    time.sleep(seconds)
    os.kill(proxy.popen.pid, signal.SIGUSR2)
    running.wait()
    time.sleep(1)  # the dump


def _start(name: str, target: list[str], tmp: Path, health: str | None) -> Proc:
    port = free_port()
    env = dict(os.environ, CALL_PROFILE_OUT=str(tmp / f"{name}.prof"))
    cmd = [sys.executable, "-c", _WRAPPER, *target, "--port", str(port)]
    proc = start(name, cmd, port, PROXY_CPU, tmp, env=env)
    proc.wait_ready(health)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", default="small", choices=("small", "cc76k", "cc124k"))
    parser.add_argument("--key", default="plain", choices=sorted(_MINTERS))
    parser.add_argument("--top", type=int, default=0, help="list Sluice's N busiest functions")
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    wrk = ensure_wrk()
    if wrk is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    os.sched_setaffinity(0, {LOADGEN_CPU})
    tmp = Path(tempfile.mkdtemp(prefix="sluice-calls-"))
    upstream = start_upstream(LOADGEN_CPU, tmp)
    procs = [upstream]
    try:
        upstream.wait_ready()
        cfg = write_config(tmp, upstream.url)
        key = _MINTERS[args.key](cfg)
        case = next(c for c in body_cases(key) if c.name == args.body)
        script = write_wrk_script(case.json, tmp)
        bare = [str(BENCH / "bare_relay.py"), "--upstream", upstream.url]
        sluice = [*sluice_cmd(), "serve", "--config", str(cfg)]
        results = {}
        for name, target, health in (("bare", bare, None), ("sluice", sluice, "/healthz")):
            proc = _start(name, target, tmp, health)
            procs.append(proc)
            _profiled(proc, wrk, script, args.seconds)
            proc.stop()
            results[name] = summarize(tmp / f"{name}.prof")
        _report(results, args.body)
        if args.top:
            _top_functions(tmp / "sluice.prof", results["sluice"][0], args.top)
    finally:
        for proc in procs:
            proc.stop()


def _report(results: dict[str, tuple[int, dict[str, tuple[float, float]]]], body: str) -> None:
    names = sorted(
        {p for _, per in results.values() for p in per},
        key=lambda p: -max(results[side][1].get(p, (0.0, 0.0))[0] for side in results),
    )
    print(f"Python calls per request ({body} body, c=16, under cProfile)\n")
    print("| package | bare relay: calls | own µs | Sluice: calls | own µs |")
    print("|---|---|---|---|---|")
    for name in names:
        bare, sluice = (results[side][1].get(name, (0.0, 0.0)) for side in ("bare", "sluice"))
        if max(bare[0], sluice[0]) >= 0.5:  # packages a request barely touches are left out
            cells = (f"{bare[0]:.1f}", f"{bare[1]:.0f}", f"{sluice[0]:.1f}", f"{sluice[1]:.0f}")
            print(f"| {name} | " + " | ".join(cells) + " |")
    for side in ("bare", "sluice"):
        requests, per = results[side]
        calls = sum(c for c, _ in per.values())
        own = sum(u for _, u in per.values())
        print(f"\n{side}: {requests:,} requests profiled, {calls:.0f} calls, {own:.0f} µs each")


def _where(filename: str) -> str:
    return "C" if filename == "~" else filename.split("/sluice/")[-1]


def _top_functions(path: Path, requests: int, top: int) -> None:
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = [
        (calls / requests, own_s / requests * 1e6, f"{_where(f)}:{line} {name}")
        for (f, line, name), (_, calls, own_s, _, _) in stats.items()
        if _package(f).startswith("sluice") or f == "~"
    ]
    rows.sort(reverse=True)
    print(f"\nSluice's {top} busiest functions and C calls (calls per request, own µs)\n")
    for calls, own, where in rows[:top]:
        print(f"{calls:6.2f} {own:7.1f}  {where}")


if __name__ == "__main__":
    main()
