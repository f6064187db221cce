"""Sluice's overhead benchmark: direct, bare relay, full Sluice, Sluice + a key policy, in one run.

    .venv/bin/python bench/overhead.py [--quick] [--out bench/results/latest.json]

The fake upstream, the load generators and this driver run on core 1; the proxy under test on
core 0 (taskset). For each body (small, Claude Code 76 KB, Claude Code 124 KB) the proxies are
started fresh, warmed up, and then each round measures every target in turn (rotating the
order): req/s at c=1/16/64 (wrk, or the Python client without wrk), p50/p99 latency at c=1 and
SSE time to first body byte at c=1 (Python aiohttp client). Medians of the rounds are reported;
"added" numbers are paired with direct within each round. See bench/README.md.

"policy" is the same Sluice process as "sluice", called with a second virtual key whose config
denies 20 regex patterns (tools, MCP servers, URLs) that nothing in the bodies matches; it is
also paired with "sluice" within each round (what the policy adds).

Optional rows (off by default, so the default run is unchanged):
--budgets adds "budget": the same Sluice process again, with a third key (principal
bench-budget, project bench, a rate limit) under two budgets that never trip; and "whole", a
fourth key with all of it on one key (the same principal and project, so the same budgets, the
rate limit and the policy key's patterns): issue #12's "full pipeline".
--pg-redis adds "pg": a second `sluice serve` on PostgreSQL + Redis (a fresh database, Redis
db 12), called with the same kind of key and budgets (the Lua reserve/settle path).
--against REV adds "baseline": a second `sluice serve` running the gateway at git revision REV
(its own code snapshot, config, SQLite file and key), paired per round with "sluice": an A/B
of two revisions within one run, free of run-to-run noise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import report
from bodies import BodyCase, body_cases, rekey
from loadgen import ensure_wrk, scratch_dir, write_wrk_script
from measure import Plan, measure_cell, python_rps, warm_up
from procs import (
    Proc,
    free_port,
    kernel_threads_cpu_seconds,
    named_cpu_seconds,
    own_cpu_seconds,
    start,
    start_spinner,
    start_upstream,
    system_busy_seconds,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROXY_CPU, LOADGEN_CPU = 0, 1
MODELS = ("claude-opus-4-8", "claude-haiku-4-5-20251001")  # the models the bodies ask for
# The second key's policy: 20 deny patterns, none of which matches a tool, MCP server or URL in
# the bodies or the fake's replies (checked by check_policy_misses), so no request is refused.
# The tool patterns avoid the tools the bodies declare too, so the rows stay valid in any mode.
POLICY_RULES: dict[str, dict[str, list[str]]] = {
    "tools": {
        "deny": [
            "^mcp__evil.*",
            "Dangerous\\d+",
            "^KillProcess$",
            "^ShellExec$",
            "^RunAsRoot$",
            "^DeleteRepo$",
            "^FormatDisk$",
            "^ExfiltrateData$",
            "^mcp__.*__delete_.*",
            "^SendEmail$",
            "^Transfer(Funds|Money)$",
            "^(Rm|Rmdir)Recursive$",
        ]
    },
    "mcp": {"deny": ["^evil$", "^untrusted-.*", "^exfil", "shady\\d*$"]},
    "urls": {
        "deny": [
            "^https?://(www\\.)?pastebin\\.com/",
            "^https?://[^/]*\\.onion(/|$)",
            "^https?://evil\\.example/",
            "^https?://[^/]*requestbin\\.(net|com)/",
        ]
    },
}
POLICY_PATTERNS = sum(len(r["deny"]) for r in POLICY_RULES.values())
FULL = Plan(rounds=3, rps_seconds=3, latency_seconds=2.0, use_wrk=True, loadgen_cpu=LOADGEN_CPU)
# The budget key: a rate limit that never trips, under two budgets that never trip either.
BUDGET_PRINCIPAL, BUDGET_PROJECT = "bench-budget", "bench"
BUDGET_KEY_CONFIG = {"rate_limits": {"rpm": 10_000_000, "tpm": 100_000_000_000}}
BUDGETS: tuple[tuple[str, ...], ...] = (
    ("--scope", "principal", "--target", BUDGET_PRINCIPAL, "--window", "month"),
    ("--limit", "1000000", "--on-breach", "block"),
    ("--scope", "project", "--target", BUDGET_PROJECT, "--window", "day"),
    ("--limit", "1000000", "--on-breach", "warn"),
)
PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1"]
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
REDIS_URL, REDIS_DB = "redis://127.0.0.1:6379/12", "12"
SERVICES = frozenset({"postgres", "redis-server"})  # their CPU counts as ours with --pg-redis
QUICK = Plan(rounds=1, rps_seconds=1, latency_seconds=1.0, use_wrk=True, loadgen_cpu=LOADGEN_CPU)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sluice_cmd() -> list[str]:
    script = Path(sys.executable).with_name("sluice")
    found = str(script) if script.exists() else shutil.which("sluice")
    if found is None:
        raise SystemExit("the `sluice` console script is not installed (pip install -e .)")
    return [found]


def write_config(
    tmp: Path,
    upstream_url: str,
    database: str | None = None,
    redis: str | None = None,
    extra_yaml: str = "",
) -> Path:
    cfg = tmp / ("sluice-pg.yaml" if database else "sluice.yaml")
    cfg.write_text(
        (extra_yaml + "\n" if extra_yaml else "")
        + "server: {host: 127.0.0.1, port: 4000, log_level: warning}\n"
        f"database: {database or f'sqlite:///{tmp}/sluice.db'}\n"
        + (f"redis: {redis}\n" if redis else "")
        + "secret_key: bench-secret\n"
        # The pipeline without tracing (bench/tracing_overhead.py measures tracing), whatever
        # the default of the commit under test, unless the extra YAML sets it.
        + (
            ""
            if extra_yaml.startswith("tracing:") or "\ntracing:" in extra_yaml
            else "tracing: {enabled: false}\n"
        )
        + "providers:\n"
        "  anthropic-primary: {type: anthropic, api_key: sk-ant-bench, "
        f'base_url: "{upstream_url}", models: [{", ".join(MODELS)}]}}\n'
    )
    return cfg


def mint_key(
    cfg: Path,
    name: str = "bench",
    key_config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    owner: tuple[str, str] | None = None,
) -> str:
    """A virtual key from ``sluice keys create``; ``env`` picks the code (the baseline's CLI),
    ``owner`` its (principal, project)."""
    cmd = [*sluice_cmd(), "keys", "create", "--name", name, "--config", str(cfg), "--json"]
    if owner is not None:
        cmd += ["--principal", owner[0], "--project", owner[1]]
    if key_config is not None:
        vk_file = cfg.with_name(f"vk-{name}.json")  # JSON is YAML: no quoting of the regexes
        vk_file.write_text(json.dumps(key_config, indent=2) + "\n")
        cmd += ["--config-file", str(vk_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True, env=env)
    return str(json.loads(out.stdout)["key"])


def mint_budget_key(cfg: Path, env: dict[str, str] | None = None) -> str:
    """The third key (principal bench-budget, project bench, a rate limit) and its 2 budgets;
    ``env`` picks the code (a baseline's CLI)."""
    owner = (BUDGET_PRINCIPAL, BUDGET_PROJECT)
    key = mint_key(cfg, BUDGET_PRINCIPAL, BUDGET_KEY_CONFIG, env, owner)
    for i in range(0, len(BUDGETS), 2):
        budget = [*sluice_cmd(), "budgets", "create", *BUDGETS[i], *BUDGETS[i + 1]]
        budget += ["--config", str(cfg), "--json"]
        subprocess.run(budget, capture_output=True, text=True, timeout=60, check=True, env=env)
    return key


def mint_whole_key(cfg: Path, env: dict[str, str] | None = None) -> str:
    """Issue #12's "full pipeline" on one key: the budget key's principal and project (so the
    same two budgets apply; mint the budget key first), its rate limit, and the policy key's
    patterns; ``env`` picks the code (a baseline's CLI)."""
    config = {**BUDGET_KEY_CONFIG, "policy_rules": POLICY_RULES}
    return mint_key(cfg, "bench-whole", config, env, (BUDGET_PRINCIPAL, BUDGET_PROJECT))


def redis_flush() -> None:
    subprocess.run(["redis-cli", "-n", REDIS_DB, "flushdb"], capture_output=True, check=True)


def pg_create(db: str) -> None:
    subprocess.run([*PG_ADMIN, "-c", f"CREATE DATABASE {db}"], capture_output=True, check=True)


def pg_drop(db: str) -> None:
    sql = f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    out = subprocess.run([*PG_ADMIN, "-c", sql], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        log(f"could not drop database {db}: {out.stderr.strip()}")


_URL = re.compile(r"https?://[^\s\"'<>\\)\]}]+")


def check_policy_misses(cases: list[BodyCase]) -> None:
    """Refuse to measure if a deny pattern matches a declared tool or any URL in a body: the
    policy rows must measure the cost of checking, not of refusing."""
    tools = [re.compile(p) for p in POLICY_RULES["tools"]["deny"]]
    mcp = [re.compile(p) for p in POLICY_RULES["mcp"]["deny"]]
    urls = [re.compile(p) for p in POLICY_RULES["urls"]["deny"]]
    for case in cases:
        body = json.loads(case.json.body)
        names = [t.get("name", "") for t in body.get("tools", []) if isinstance(t, dict)]
        servers = [n[5:].partition("__")[0] for n in names if n.startswith("mcp__")]
        found = _URL.findall(case.json.body.decode())
        for values, patterns in ((names, tools), (servers, mcp), (found, urls)):
            hits = [(v, p.pattern) for v in values for p in patterns if p.search(v)]
            if hits:
                raise SystemExit(f"policy pattern matches the {case.name} body: {hits[:3]}")


def _git(*args: str) -> str:
    out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False)
    return out.stdout.decode().strip()


def snapshot_code(tmp: Path, commit: str | None) -> dict[str, Any]:
    """Freeze the gateway code for the whole run and point every child process at it.

    Other people edit and commit ``src/`` while a run takes minutes, and each body starts a
    fresh ``sluice serve``: without a snapshot, two bodies could measure two versions. With
    ``commit``: ``git archive COMMIT src`` (read-only). Without: a copy of the working tree's
    ``src/`` taken now. ``PYTHONPATH`` puts it before the editable install's path.
    """
    dest = tmp / "code"
    if commit is not None:
        extract_src(commit, dest)
        dirty: list[str] = []
        source = f"git archive {commit}"
    else:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(REPO / "src", dest / "src", ignore=ignore)
        dirty = [line[3:] for line in _git("status", "--porcelain", "--", "src").splitlines()]
        source = "copy of the working tree's src/ at the start of the run"
    src = dest / "src"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p
    )
    check = imported_sluice()
    if not check.startswith(str(src)):
        raise SystemExit(f"the snapshot is not what child processes import: {check}")
    return {"source": source, **rev_info(commit or "HEAD"), "uncommitted_src": dirty}


def extract_src(rev: str, dest: Path) -> None:
    """``git archive REV src`` unpacked into ``dest`` (read-only in the repository)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"],
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")


def imported_sluice(env: dict[str, str] | None = None) -> str:
    """The file a child process started with ``env`` imports ``sluice`` from."""
    return subprocess.run(
        [sys.executable, "-c", "import sluice; print(sluice.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()


def rev_info(rev: str) -> dict[str, str | None]:
    return {
        "commit": _git("rev-parse", "--short", rev) or None,
        "commit_subject": _git("log", "-1", "--format=%s", rev) or None,
    }


def snapshot_baseline(
    tmp: Path, rev: str, pythonpath: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """The --against revision's code in ``tmp/baseline/code``, and the environment its processes
    (``sluice serve``, ``sluice keys create``) run with: ``PYTHONPATH`` = that snapshot, then
    ``pythonpath`` (the one the driver inherited), never the run's own snapshot."""
    if not _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"):
        raise SystemExit(f"--against: {rev!r} is not a commit of {REPO}")
    extract_src(rev, tmp / "baseline" / "code")
    src = tmp / "baseline" / "code" / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(src), pythonpath) if p)}
    check = imported_sluice(env)
    if not check.startswith(str(src)):
        raise SystemExit(f"the baseline snapshot is not what its processes import: {check}")
    meta = {"rev": rev, "source": f"git archive {rev}", **rev_info(rev), "imports": check}
    log(f"baseline code: {meta['source']} ({meta['commit']}: {meta['commit_subject']})")
    log(f"  its processes import {check}")
    return env, meta


@dataclass(frozen=True)
class SecondSluice:
    """Another ``sluice serve`` process, started per body next to the first (pg, baseline)."""

    target: str
    cfg: Path
    case: BodyCase
    env: dict[str, str] | None = None  # None: the run's code snapshot (os.environ)
    services: frozenset[str] = frozenset()  # processes whose CPU is the target's work


def start_second(second: SecondSluice, pin: int | None, tmp: Path) -> Proc:
    """Start and wait for ``second``; with its own ``env``, check the process really got it."""
    port = free_port()
    serve = [*sluice_cmd(), "serve", "--config", str(second.cfg), "--port", str(port)]
    proc = start(f"sluice-{second.target}", serve, port, pin, tmp, second.env)
    proc.wait_ready("/healthz")
    if second.env is not None:
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        got = next((e[11:].decode() for e in environ if e.startswith(b"PYTHONPATH=")), "")
        if got != second.env["PYTHONPATH"]:
            raise SystemExit(f"{proc.name} runs with PYTHONPATH={got!r}")
        log(f"  {proc.name} (pid {proc.pid}) runs with PYTHONPATH={got}")
    return proc


def machine_info(wrk: str | None) -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = {p: metadata.version(p) for p in ("sluice", "aiohttp", "uvicorn", "uvloop")}
    versions["httptools"] = metadata.version("httptools")
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        versions["wrk"] = (out.stdout or out.stderr).split("[")[0].strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
    }


def measure_body(
    case: BodyCase,
    policy_case: BodyCase,
    upstream: Proc,
    cfg: Path,
    plan: Plan,
    scripts: dict[str, Path],
    tmp: Path,
    procs: list[Proc],
    pin: int | None,
    keyed: dict[str, BodyCase] | None = None,
    seconds: tuple[SecondSluice, ...] = (),
) -> dict[str, Any]:
    bare_port, sluice_port = free_port(), free_port()
    bare_cmd = [sys.executable, str(BENCH / "bare_relay.py"), "--port", str(bare_port)]
    bare = start("bare", [*bare_cmd, "--upstream", upstream.url], bare_port, pin, tmp)
    procs.append(bare)
    serve = [*sluice_cmd(), "serve", "--config", str(cfg), "--port", str(sluice_port)]
    sluice = start("sluice", serve, sluice_port, pin, tmp)
    procs.append(sluice)
    bare.wait_ready()
    sluice.wait_ready("/healthz")
    # "policy" is the same Sluice process with the second key: same process, same warm caches.
    targets: dict[str, tuple[str, Proc | None, BodyCase]] = {
        "direct": (upstream.url, None, case),
        "bare": (bare.url, bare, case),
        "sluice": (sluice.url, sluice, case),
        "policy": (sluice.url, sluice, policy_case),
    }
    # The same process again with other keys: "budget" (2 budgets + a rate limit), "whole"
    # (those and the policy, on one key).
    for target, keyed_case in (keyed or {}).items():
        targets[target] = (sluice.url, sluice, keyed_case)
    second_procs: list[Proc] = []
    for second in seconds:  # other Sluice processes (pg, baseline), same pinning
        second_proc = start_second(second, pin, tmp)
        procs.append(second_proc)
        second_procs.append(second_proc)
        targets[second.target] = (second_proc.url, second_proc, second.case)
    for url, _, target_case in targets.values():
        warm_up(url, target_case)
    names = tuple(t for t in report.TARGETS if t in targets)
    rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in names}
    discarded: list[dict[str, Any]] = []
    n_targets = len(names)
    redos_left = plan.rounds if plan.max_background_pct is not None else 0
    services = frozenset[str]().union(*(second.services for second in seconds))

    def own() -> float:
        return own_cpu_seconds(procs) + kernel_threads_cpu_seconds() + named_cpu_seconds(services)

    while len(rounds["direct"]) < plan.rounds:
        r = len(rounds["direct"])  # the order rotates over kept rounds: a redo keeps its order
        order = names[r % n_targets :] + names[: r % n_targets]
        cells: dict[str, dict[str, Any]] = {}
        for target in order:
            url, proc, target_case = targets[target]
            started = time.monotonic()
            busy, own_before = system_busy_seconds(), own()
            cell = measure_cell(url, target_case, proc, plan, scripts)
            wall = (time.monotonic() - started) * (os.cpu_count() or 1)
            others = (system_busy_seconds() - busy) - (own() - own_before)
            cell["background_cpu_pct"] = round(100 * max(0.0, others) / wall, 1)
            cells[target] = cell
            log(
                f"  round {r + 1} {target:6} c1={cell['rps_c1']:7.0f} c16={cell['rps_c16']:7.0f} "
                f"c64={cell['rps_c64']:7.0f} req/s  p50={cell['p50_ms']:.3f} ms  "
                f"ttfb={cell['ttfb_p50_ms']:.3f} ms  errors={cell['errors']}  "
                f"background={cell['background_cpu_pct']:.0f}%  "
                f"({time.monotonic() - started:.0f}s)"
            )
        noisiest = max(c["background_cpu_pct"] for c in cells.values())
        limit = plan.max_background_pct
        if limit is not None and noisiest > limit and redos_left > 0:
            redos_left -= 1
            discarded.append({"round": r + 1, "background_max_pct": noisiest, "cells": cells})
            log(f"  round {r + 1} discarded: others used {noisiest:.0f}% (> {limit:g}%), redoing")
            continue
        for target, cell in cells.items():
            rounds[target].append(cell)
    rss = {name: proc.memory_kib() for name, (_, proc, _) in targets.items() if proc is not None}
    for proc in (bare, sluice, *second_procs):
        proc.stop()
    summary = report.summarize_body(rounds)
    ab = {"now_vs_baseline": report.now_vs_baseline(rounds)} if "baseline" in rounds else {}
    return {
        "label": case.label,
        "bytes": {"json": len(case.json.body), "sse": len(case.sse.body)},
        "path": case.json.path,
        "rounds": rounds,
        "discarded_rounds": discarded,
        "summary": summary,
        "ratios": report.ratios(summary),
        "rss_kib": {name: mem.get("VmRSS") for name, mem in rss.items()},
        "peak_rss_kib": {name: mem.get("VmHWM") for name, mem in rss.items()},
        **ab,
    }


def loadgen_ceiling(upstream: Proc, case: BodyCase, plan: Plan) -> dict[str, Any]:
    """What the Python client alone can drive against the fake upstream (same core as it)."""
    runs: dict[str, list[float]] = {"python_c16": [], "python_c64": []}
    for _ in range(plan.rounds):
        for conc in (16, 64):
            res = python_rps(upstream.url, case.json, conc, plan.rps_seconds)
            runs[f"python_c{conc}"].append(res["rps"])
    return {k: sorted(v)[len(v) // 2] for k, v in runs.items()}


def pg_seconds(
    tmp: Path, upstream_url: str, db: str, extra_yaml: str, cases: list[BodyCase]
) -> list[SecondSluice]:
    """The "pg" target per body: a fresh database and Redis db, a budget key minted in them."""
    redis_flush()
    pg_create(db)
    cfg = write_config(tmp, upstream_url, PG_URL.format(db=db), REDIS_URL, extra_yaml)
    key = mint_budget_key(cfg)
    return [SecondSluice("pg", cfg, rekey(c, key, "pg"), services=SERVICES) for c in cases]


def baseline_seconds(
    tmp: Path, upstream_url: str, env: dict[str, str], extra_yaml: str, cases: list[BodyCase]
) -> list[SecondSluice]:
    """The "baseline" target per body: its own config and SQLite file (the two revisions may
    migrate differently) in ``tmp/baseline``, and a key minted by the baseline's CLI."""
    cfg = write_config(tmp / "baseline", upstream_url, extra_yaml=extra_yaml)
    key = mint_key(cfg, env=env)
    return [SecondSluice("baseline", cfg, rekey(c, key, "baseline"), env) for c in cases]


def run(
    plan: Plan,
    out: Path,
    keep: bool,
    keep_awake: bool,
    commit: str | None = None,
    budgets: bool = False,
    pg_redis: bool = False,
    extra_yaml: str = "",
    against: str | None = None,
) -> dict[str, Any]:
    pin = PROXY_CPU if (os.cpu_count() or 1) >= 2 else None
    loadgen_pin = LOADGEN_CPU if pin is not None else None
    if loadgen_pin is not None:
        os.sched_setaffinity(0, {loadgen_pin})  # the Python client runs in this process
    wrk = ensure_wrk() if plan.use_wrk else None
    if plan.use_wrk and wrk is None:
        log("wrk is not available: measuring req/s with the Python client (see its ceiling)")
    plan = replace(plan, use_wrk=wrk is not None, loadgen_cpu=loadgen_pin)
    tmp = scratch_dir()
    procs: list[Proc] = []
    began = time.monotonic()
    pg_db = f"sluice_bench_{os.getpid()}" if pg_redis else None
    inherited_pythonpath = os.environ.get("PYTHONPATH", "")  # before snapshot_code sets it
    try:
        code = snapshot_code(tmp, commit)
        log(f"gateway code: {code['source']} ({code['commit']})")
        base_env, base_meta = (
            snapshot_baseline(tmp, against, inherited_pythonpath) if against else (None, None)
        )
        if keep_awake and pin is not None and loadgen_pin is not None:
            procs += [start_spinner(pin, tmp), start_spinner(loadgen_pin, tmp)]
        upstream = start_upstream(loadgen_pin, tmp)
        procs.append(upstream)
        upstream.wait_ready()
        cfg = write_config(tmp, upstream.url, extra_yaml=extra_yaml)
        key = mint_key(cfg)
        policy_key = mint_key(cfg, "bench-policy", {"policy_rules": POLICY_RULES})
        cases = body_cases(key)
        check_policy_misses(cases)
        policy_cases = [rekey(case, policy_key, "policy") for case in cases]
        keyed: list[dict[str, BodyCase]] = [{} for _ in cases]
        seconds: list[tuple[SecondSluice, ...]] = [()] * len(cases)
        if budgets:
            budget_key = mint_budget_key(cfg)
            whole_key = mint_whole_key(cfg)  # after the budgets: they apply to it too
            keyed = [
                {
                    "budget": rekey(case, budget_key, "budget"),
                    "whole": rekey(case, whole_key, "whole"),
                }
                for case in cases
            ]
        if pg_db is not None:
            pg = pg_seconds(tmp, upstream.url, pg_db, extra_yaml, cases)
            seconds = [(*s, p) for s, p in zip(seconds, pg, strict=True)]
        if base_env is not None:
            base = baseline_seconds(tmp, upstream.url, base_env, extra_yaml, cases)
            seconds = [(*s, b) for s, b in zip(seconds, base, strict=True)]
        extra = [c for per in keyed for c in per.values()]
        extra += [s.case for per in seconds for s in per]
        scripts = {}
        if plan.use_wrk:
            for case in (*cases, *policy_cases, *extra):
                for work in (case.json, case.sse):
                    scripts[work.name] = write_wrk_script(work, tmp)
        result: dict[str, Any] = {
            "meta": {
                "sluice_yaml": extra_yaml,
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "machine": machine_info(wrk),
                "code": code,
                "plan": plan.__dict__,
                "rps_tool": "wrk (1 thread, keep-alive)" if plan.use_wrk else "Python aiohttp",
                "pinning": {"proxy_cpu": pin, "upstream_and_loadgen_cpu": loadgen_pin},
                "keep_awake": keep_awake,
                "policy_rules": POLICY_RULES,
                "policy_patterns": POLICY_PATTERNS,
                "budget_key": (
                    {
                        "principal": BUDGET_PRINCIPAL,
                        "project": BUDGET_PROJECT,
                        "config": BUDGET_KEY_CONFIG,
                        "budgets": [" ".join(BUDGETS[i] + BUDGETS[i + 1]) for i in (0, 2)],
                    }
                    if budgets or pg_redis
                    else None
                ),
                "whole_key": (
                    {
                        "principal": BUDGET_PRINCIPAL,
                        "project": BUDGET_PROJECT,
                        "config": "the budget key's rate limit and the policy key's rules",
                    }
                    if budgets
                    else None
                ),
                "pg_redis": (
                    {"database": PG_URL.format(db=pg_db), "redis": REDIS_URL} if pg_db else None
                ),
                "against": base_meta,
            },
            "bodies": {},
        }
        log("load generator ceiling (Python client -> fake upstream, small body)")
        result["loadgen_ceiling"] = loadgen_ceiling(upstream, cases[0], plan)
        for case, policy_case, body_keyed, body_seconds in zip(
            cases, policy_cases, keyed, seconds, strict=True
        ):
            log(f"{case.label}: {len(case.json.body):,} B")
            result["bodies"][case.name] = measure_body(
                case,
                policy_case,
                upstream,
                cfg,
                plan,
                scripts,
                tmp,
                procs,
                pin,
                body_keyed,
                body_seconds,
            )
        small_direct = result["bodies"]["small"]["summary"]["direct"]
        if plan.use_wrk:
            for conc in (16, 64):
                result["loadgen_ceiling"][f"wrk_c{conc}"] = small_direct.get(f"rps_c{conc}")
        background = [
            c["background_cpu_pct"]
            for body in result["bodies"].values()
            for cells in body["rounds"].values()
            for c in cells
        ]
        result["meta"]["background_cpu_pct"] = {
            "median": sorted(background)[len(background) // 2],
            "max": max(background),
            "discarded_rounds": sum(len(b["discarded_rounds"]) for b in result["bodies"].values()),
        }
        result["meta"]["upstream_rss_kib"] = upstream.memory_kib().get("VmRSS")
        result["meta"]["elapsed_s"] = round(time.monotonic() - began, 1)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if pg_db is not None:
            pg_drop(pg_db)
            redis_flush()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = report.markdown(result)
    out.with_suffix(".md").write_text(table)
    print(table)
    log(f"wrote {out} and {out.with_suffix('.md')} in {result['meta']['elapsed_s']:.0f}s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s runs (~1 minute)")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "latest.json")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--no-wrk", action="store_true", help="req/s from the Python client")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, DB)")
    parser.add_argument(
        "--commit",
        help="measure the gateway at this commit (git archive); default: the working tree's src/",
    )
    parser.add_argument(
        "--no-keep-awake",
        action="store_true",
        help="no SCHED_IDLE spinners: let idle vCPUs halt (c=1 numbers then include wake-ups)",
    )
    parser.add_argument(
        "--max-background",
        type=float,
        default=15.0,
        metavar="PCT",
        help="redo a round when other processes used more than PCT%% of the machine in one of"
        " its cells (at most --rounds redos per body; default 15; 100 keeps every round)",
    )
    parser.add_argument(
        "--budgets",
        action="store_true",
        help="add the rows 'Sluice + 2 budgets + rate limit' (same process, a third key) and "
        "'all on one key' (a fourth: the policy and the budgets)",
    )
    parser.add_argument(
        "--pg-redis",
        action="store_true",
        help="add the row 'Sluice on PostgreSQL + Redis' (a second process; needs 127.0.0.1"
        " postgres (trust, user postgres, db test) and redis; a fresh database, redis db 12)",
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        help="add the row 'Sluice (full) at REV': a second process running the gateway at git"
        " revision REV, measured in the same rounds (a same-run A/B against the run's code)",
    )
    parser.add_argument(
        "--sluice-yaml",
        default="",
        metavar="YAML",
        help="top-level lines added to the gateway's config, for A/B runs of a setting,"
        " e.g. 'ledger: {acknowledge_after_commit: false}'",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    plan = replace(
        plan,
        rounds=args.rounds or plan.rounds,
        use_wrk=not args.no_wrk,
        max_background_pct=args.max_background if args.max_background < 100 else None,
    )
    run(
        plan,
        args.out,
        args.keep,
        keep_awake=not args.no_keep_awake,
        commit=args.commit,
        budgets=args.budgets,
        pg_redis=args.pg_redis,
        extra_yaml=args.sluice_yaml,
        against=args.against,
    )


if __name__ == "__main__":
    main()
