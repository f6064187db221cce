"""Two gateways under load at the same time, on the same core: which one costs more CPU?

The overhead benchmark measures targets one after another, so a change in the machine's
speed between two cells (this VM's vCPU speed drifts by 10-30 % over minutes) lands in the
comparison. Here both gateways run pinned to one core and are loaded together (a wrk each,
c=16, on the other core): the scheduler splits the core between them, so at any instant both
see the same machine, and the cheaper one serves more requests. The req/s ratio B/A is then
CPU(A)/CPU(B) with the drift cancelled: in practice repeatable to about 1 %.

Each side is a revision (``git archive``) or ``WT`` (a copy of the working tree's src/), with
optional extra YAML, so it compares two commits or two settings of one commit::

    .venv/bin/python bench/ab_simultaneous.py --a WT --b c75989e
    .venv/bin/python bench/ab_simultaneous.py --a WT --b WT \\
        --b-yaml 'ledger: {acknowledge_after_commit: false}'

``--budgets`` gives both sides overhead.py's budget key (two budgets and a rate limit);
``--pg-redis a|b|both`` puts those sides on PostgreSQL (a fresh database each) and Redis (db
12), with the budget key, so ``--budgets --pg-redis a`` weighs the shared backends against
SQLite and in-process counters, both loaded at once.

It prints, per body and round, both req/s, the ratio A/B and each process's CPU µs per
request (from /proc), then the median of both ratios: req/s A/B and CPU per request B/A.
They agree unless one side runs busier threads than the other: the scheduler shares a core
per thread, not per process, so a gateway whose ledger thread is busy gets more of the core
(measured: skipping the SQLite insert left req/s A/B at 0.997 while CPU B/A was 1.027). Read
the CPU ratio when the change moves work between threads.

Rounds within one run repeat to about 1 %, but separate runs (fresh processes) of the same
pair differ by up to 3-4 %, and pairs from separate runs do not multiply up. ``--runs N``
starts fresh gateways N times, alternating which starts first, and takes the median over
every round of every run: use it (3 or more) for differences of a few percent. Not a test:
CI never runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from bodies import BodyCase, body_cases, long_turn_case, rekey
from loadgen import ensure_wrk, write_wrk_script
from overhead import (
    LOADGEN_CPU,
    PG_URL,
    PROXY_CPU,
    REDIS_URL,
    REPO,
    mint_budget_key,
    mint_key,
    mint_whole_key,
    pg_create,
    pg_drop,
    redis_flush,
    sluice_cmd,
    snapshot_baseline,
    write_config,
)
from procs import (
    Proc,
    free_port,
    process_cpu_s,
    settled_cpu_s,
    start,
    start_spinner,
    start_upstream,
)


def _code_env(side: Path, rev: str) -> tuple[dict[str, str], str]:
    """The environment that runs ``rev``'s code (WT: a copy of the working tree's src/)."""
    if rev != "WT":
        env, meta = snapshot_baseline(side, rev, os.environ.get("PYTHONPATH", ""))
        return env, f"{meta.get('commit')} ({meta.get('commit_subject')})"
    dest = side / "code" / "src"
    shutil.copytree(REPO / "src", dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dict(os.environ, PYTHONPATH=str(dest)), "working tree"


def _side(
    where: Path,
    name: str,
    code: tuple[dict[str, str], str],
    yaml: str,
    upstream: str,
    pg_db: str | None = None,
    budgets: bool = False,
    whole: bool = False,
) -> tuple[Proc, list[BodyCase]]:
    """A fresh gateway (its own config, database and key) running ``code``; with ``pg_db``, on
    that PostgreSQL database and Redis, with the budget key."""
    where.mkdir(parents=True)
    env = code[0]
    if pg_db is None:
        cfg = write_config(where, upstream, extra_yaml=yaml)
        key = mint_budget_key(cfg, env=env) if budgets else mint_key(cfg, env=env)
        if whole:  # the budget key's budgets apply to it: minted after them
            key = mint_whole_key(cfg, env=env)
    else:
        pg_create(pg_db)
        cfg = write_config(where, upstream, PG_URL.format(db=pg_db), REDIS_URL, yaml)
        key = mint_budget_key(cfg, env=env)
    port = free_port()
    serve = [*sluice_cmd(), "serve", "--config", str(cfg), "--port", str(port)]
    proc = start(f"sluice-{name}", serve, port, PROXY_CPU, where, env=env)
    proc.wait_ready("/healthz")
    return proc, [rekey(c, key, name) for c in (*body_cases(key), long_turn_case(key))]


def _descendants(pid: int) -> list[int]:
    """``pid``'s live child processes, and theirs (the span sink is the gateway's child)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def _cpu_s(pid: int) -> float:
    """The gateway's CPU seconds with its child processes' (tracing's span sink): what a
    request costs the machine, wherever the work runs."""
    return sum(process_cpu_s(p) for p in [pid, *_descendants(pid)])


def _wrk(wrk: str, script: Path, url: str, seconds: int) -> subprocess.Popen[str]:
    cmd = ["taskset", "-c", str(LOADGEN_CPU), wrk, "-t1", "-c16", f"-d{seconds}s"]
    return subprocess.Popen([*cmd, "-s", str(script), url], stdout=subprocess.PIPE, text=True)


def _done(run: subprocess.Popen[str]) -> int:
    out, _ = run.communicate()
    for line in out.splitlines():
        if "requests in" in line:
            return int(line.split()[0])
    raise RuntimeError(f"wrk printed no request count:\n{out}")


def _round(
    wrk: str, sides: dict[str, tuple[Proc, Path]], seconds: int
) -> dict[str, dict[str, float]]:
    before = {n: settled_cpu_s([p.pid], cpu_of=_cpu_s) for n, (p, _) in sides.items()}
    own_before = {n: process_cpu_s(p.pid) for n, (p, _) in sides.items()}
    runs = {
        n: _wrk(wrk, script, p.url + "/v1/messages", seconds) for n, (p, script) in sides.items()
    }
    done = {n: _done(r) for n, r in runs.items()}
    own = {n: process_cpu_s(p.pid) - own_before[n] for n, (p, _) in sides.items()}
    cpu = {n: settled_cpu_s([p.pid], cpu_of=_cpu_s) - before[n] for n, (p, _) in sides.items()}
    return {
        n: {
            "requests": done[n],
            "rps": done[n] / seconds,
            "cpu_us_per_req": 1e6 * cpu[n] / max(1, done[n]),
            # the gateway process alone, without its children (the span sink)
            "own_cpu_us_per_req": 1e6 * own[n] / max(1, done[n]),
        }
        for n in sides
    }


def _measure(
    wrk: str,
    where: Path,
    sides: dict[str, tuple[Proc, list[BodyCase]]],
    body: str,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """``args.rounds`` rounds of one body against both gateways at once."""
    scripts = {}
    for name in ("a", "b"):
        proc, cases = sides[name]
        case = next(c for c in cases if c.name == body)
        scripts[name] = (proc, write_wrk_script(case.sse if args.sse else case.json, where / name))
    warm = _round(wrk, scripts, 2)  # warm-up (it also starts tracing's span sink, when on)
    args.served["a"] += warm["a"]["requests"]
    args.served["b"] += warm["b"]["requests"]
    if args.sink_core is not None:
        for proc, _ in scripts.values():
            for child in _descendants(proc.pid):
                os.sched_setaffinity(child, {args.sink_core})
    rounds = []
    for _ in range(args.rounds):
        cell = _round(wrk, scripts, args.seconds)
        ratio = cell["a"]["rps"] / cell["b"]["rps"]
        cpu = cell["b"]["cpu_us_per_req"] / cell["a"]["cpu_us_per_req"]
        rounds.append({**cell, "ratio_a_over_b": ratio, "cpu_b_over_a": cpu})
        args.served["a"] += cell["a"]["requests"]
        args.served["b"] += cell["b"]["requests"]
        print(
            f"{body:7} A {cell['a']['rps']:7.0f} req/s "
            f"{cell['a']['cpu_us_per_req']:4.0f} µs | B {cell['b']['rps']:7.0f} req/s "
            f"{cell['b']['cpu_us_per_req']:4.0f} µs | A/B {ratio:.3f} | CPU B/A {cpu:.3f} "
            f"| gateways alone {cell['a']['own_cpu_us_per_req']:4.0f} / "
            f"{cell['b']['own_cpu_us_per_req']:4.0f} µs",
            flush=True,
        )
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default="WT", help="a revision, or WT (the working tree)")
    parser.add_argument("--b", required=True, help="a revision, or WT")
    parser.add_argument("--a-yaml", default="", help="extra sluice.yaml for A")
    parser.add_argument("--b-yaml", default="", help="extra sluice.yaml for B")
    parser.add_argument(
        "--bodies", default="small,cc76k,cc124k", help="of those, and cc-long (bodies.py)"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--runs", type=int, default=1, help="fresh gateways this many times (order alternates)"
    )
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--sse", action="store_true", help="the streaming request, not JSON")
    parser.add_argument("--out", type=Path, help="write the rounds as JSON here")
    parser.add_argument(
        "--sink-core",
        type=int,
        help="move the gateways' child processes (the span sink) to this core after warm-up; "
        "by default they share the gateways' core",
    )
    parser.add_argument(
        "--otlp",
        action="store_true",
        help="start an OTLP/HTTP receiver (otlp_sink.py, on the load core); {otlp} in --a-yaml "
        "and --b-yaml becomes its traces URL",
    )
    parser.add_argument(
        "--pg-redis",
        choices=("a", "b", "both"),
        help="these sides on PostgreSQL (a database each) and Redis, with two budgets and a "
        "rate limit on the key",
    )
    parser.add_argument(
        "--budgets", action="store_true", help="two budgets and a rate limit on both keys"
    )
    parser.add_argument(
        "--whole",
        action="store_true",
        help="with --budgets: overhead.py's 'all on one key' (the policy's 20 patterns too)",
    )
    args = parser.parse_args()
    args.served = {"a": 0, "b": 0}  # requests each side answered, warm-ups included
    wrk = ensure_wrk()
    if wrk is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    os.sched_setaffinity(0, {LOADGEN_CPU})
    tmp = Path(tempfile.mkdtemp(prefix="sluice-ab-"))
    procs: list[Proc] = []
    result: dict[str, Any] = {
        "a": args.a,
        "b": args.b,
        "a_yaml": args.a_yaml,
        "b_yaml": args.b_yaml,
    }
    result["bodies"] = {}
    databases: list[str] = []
    try:
        procs += [start_spinner(PROXY_CPU, tmp), start_spinner(LOADGEN_CPU, tmp)]
        upstream = start_upstream(LOADGEN_CPU, tmp)
        procs.append(upstream)
        upstream.wait_ready()
        if args.otlp:
            port = free_port()
            receiver = Path(__file__).resolve().parent / "otlp_sink.py"
            sink = start(
                "otlp", [sys.executable, str(receiver), "--port", str(port)], port, LOADGEN_CPU, tmp
            )
            procs.append(sink)
            sink.wait_ready()
            traces = f"http://127.0.0.1:{port}/v1/traces"
            args.otlp_count = f"http://127.0.0.1:{port}/count"
            args.a_yaml = args.a_yaml.replace("{otlp}", traces)
            args.b_yaml = args.b_yaml.replace("{otlp}", traces)
        codes = {}
        for name, rev in (("a", args.a), ("b", args.b)):
            (tmp / f"code-{name}").mkdir()
            codes[name] = _code_env(tmp / f"code-{name}", rev)
        yamls = {"a": args.a_yaml, "b": args.b_yaml}
        print(f"A: {codes['a'][1]} {args.a_yaml}\nB: {codes['b'][1]} {args.b_yaml}", flush=True)
        bodies = args.bodies.split(",")
        all_rounds: dict[str, list[dict[str, Any]]] = {body: [] for body in bodies}
        for run in range(args.runs):
            # Fresh processes each run, started in alternating order: a pair measured within
            # one run repeats to ~1 %, but separate runs differ by up to 3-4 %.
            order = ("a", "b") if run % 2 == 0 else ("b", "a")
            sides: dict[str, tuple[Proc, list[BodyCase]]] = {}
            if args.pg_redis:
                redis_flush()
            for name in order:
                on_pg = args.pg_redis in (name, "both")
                pg_db = f"sluice_ab_{os.getpid()}_{run}_{name}" if on_pg else None
                databases += [pg_db] if pg_db else []
                where = tmp / f"run{run}" / name
                sides[name] = _side(
                    where,
                    name,
                    codes[name],
                    yamls[name],
                    upstream.url,
                    pg_db,
                    args.budgets,
                    args.whole,
                )
            try:
                for body in bodies:
                    all_rounds[body] += _measure(wrk, tmp / f"run{run}", sides, body, args)
            finally:
                for proc, _ in sides.values():
                    proc.stop()
        if args.otlp:
            # Spans that reached the receiver per request served, warm-ups included: 2.0 for
            # the small body (a turn and its model call) when nothing was dropped on the way.
            with urllib.request.urlopen(args.otlp_count, timeout=5) as r:
                spans = json.loads(r.read())["spans"]
            print(
                f"OTLP receiver: {spans:,} spans for {args.served['a']:,} requests to A and "
                f"{args.served['b']:,} to B",
                flush=True,
            )
            result["otlp_spans"] = spans
            result["served"] = dict(args.served)
        for body, rounds in all_rounds.items():
            if not rounds:
                continue
            median = statistics.median(r["ratio_a_over_b"] for r in rounds)
            cpu_median = statistics.median(r["cpu_b_over_a"] for r in rounds)
            print(f"{body:7} median A/B {median:.3f} | CPU B/A {cpu_median:.3f}", flush=True)
            result["bodies"][body] = {
                "rounds": rounds,
                "median_ratio_a_over_b": median,
                "median_cpu_b_over_a": cpu_median,
            }
    finally:
        for proc in reversed(procs):
            proc.stop()
        for db in databases:
            pg_drop(db)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
