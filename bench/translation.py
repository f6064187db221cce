"""What each translation adds: Sluice's raw Anthropic lane, its Bedrock lane (SigV4 + AWS
event stream → SSE) and its OpenAI lane (Messages → Chat Completions, chunks → SSE), each next
to a direct call to the same fake upstream, measured in one run.

    .venv/bin/python bench/translation.py [--quick] [--out bench/results/translation.json]

Same pinning as bench/overhead.py: the gateway on core 0, the three fake upstreams, the load
generators and this driver on core 1, SCHED_IDLE spinners keeping both cores awake. One
``sluice serve`` (SQLite ledger, auth on) has three providers; three virtual keys, each allowed
only one of them, pick the lane. For each body and round every target is measured in turn
(rotating the order): c=1 SSE time to first body byte (p50/p99, Python client), c=1 SSE
total time, and req/s at c=16 for SSE and for JSON (wrk, or the Python client without it).
"Added" numbers are paired with the direct call to the same fake within each round, so the
fakes' own costs (frame encoding, chunk building) cancel out.

Direct calls send what Sluice would send upstream: the Bedrock body (``to_bedrock_body``, a
Bedrock API key instead of SigV4) to ``/model/{id}/invoke[-with-response-stream]`` and the
Chat Completions body (``anthropic_to_openai``) to ``/v1/chat/completions``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import shutil
import statistics
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from bodies import BodyCase, body_cases, rekey
from loadgen import (
    Workload,
    closed_loop,
    ensure_wrk,
    percentile,
    run_wrk,
    scratch_dir,
    write_wrk_script,
)
from overhead import machine_info, mint_key, sluice_cmd, snapshot_code
from procs import Proc, free_port, start, start_spinner

BENCH = Path(__file__).resolve().parent
PROXY_CPU, LOADGEN_CPU = 0, 1
KINDS = ("anthropic", "bedrock", "openai")
TARGETS = tuple(f"{side}-{kind}" for kind in KINDS for side in ("direct", "sluice"))
BEDROCK_IDS = {
    "claude-opus-4-8": "us.anthropic.claude-opus-4-8-v1",
    "claude-haiku-4-5-20251001": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
}
OPENAI_MODEL = "gpt-4.1"
FAKE_KEY = "bench-upstream-key"


@dataclass(frozen=True)
class Plan:
    rounds: int
    rps_seconds: int
    latency_seconds: float
    use_wrk: bool


FULL = Plan(rounds=3, rps_seconds=3, latency_seconds=2.0, use_wrk=True)
QUICK = Plan(rounds=1, rps_seconds=1, latency_seconds=1.0, use_wrk=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- fake upstream processes ----------------------------------------------------------------


async def serve_fake(kind: str, port: int) -> None:
    """One fake upstream, its record of requests emptied twice a second (bounded memory)."""
    from sluice.testing.fake_anthropic import FakeAnthropic
    from sluice.testing.fake_bedrock import FakeBedrock
    from sluice.testing.fake_openai import FakeOpenAI
    from sluice.testing.scenarios import scenario_by_name

    scenario = scenario_by_name("text")
    fake: Any
    if kind == "anthropic":
        fake = FakeAnthropic(scenario, port=port)
    elif kind == "bedrock":
        fake = FakeBedrock(scenario, port=port)
    else:
        fake = FakeOpenAI(scenario, port=port)
    async with fake:
        print(f"bench {kind} upstream on {fake.url}", flush=True)
        while True:
            await asyncio.sleep(0.5)
            fake.clear()


# --- workloads ------------------------------------------------------------------------------


def direct_case(kind: str, case: BodyCase) -> BodyCase:
    """The request Sluice sends upstream for ``case``, as a workload for the fake itself."""
    if kind == "anthropic":
        return rekey(case, FAKE_KEY, "direct")
    from sluice.translate.bedrock import to_bedrock_body
    from sluice.translate.openai_chat import anthropic_to_openai

    def one(work: Workload, stream: bool) -> Workload:
        body = json.loads(work.body)
        headers: tuple[tuple[str, str], ...]
        if kind == "bedrock":
            model_id = urllib.parse.quote(BEDROCK_IDS[body["model"]], safe="")
            action = "invoke-with-response-stream" if stream else "invoke"
            path = f"/model/{model_id}/{action}"
            payload = to_bedrock_body(work.body, [])
            headers = (
                ("content-type", "application/json"),
                ("authorization", f"Bearer {FAKE_KEY}"),
            )
        else:
            path = "/v1/chat/completions"
            payload = json.dumps(anthropic_to_openai(body, model=OPENAI_MODEL)).encode()
            headers = (
                ("content-type", "application/json"),
                ("authorization", f"Bearer {FAKE_KEY}"),
            )
        return Workload(f"{work.name}-direct-{kind}", path, payload, headers)

    return BodyCase(case.name, case.label, one(case.json, False), one(case.sse, True))


def write_config(tmp: Path, urls: dict[str, str]) -> Path:
    models = ", ".join(BEDROCK_IDS)
    bedrock_map = ", ".join(f"{k}: '{v}'" for k, v in BEDROCK_IDS.items())
    openai_map = ", ".join(f"{k}: {OPENAI_MODEL}" for k in BEDROCK_IDS)
    cfg = tmp / "sluice.yaml"
    cfg.write_text(
        "server: {host: 127.0.0.1, port: 4000, log_level: warning}\n"
        f"database: sqlite:///{tmp}/sluice.db\n"
        "secret_key: bench-secret\n"
        "providers:\n"
        f"  anthropic: {{type: anthropic, api_key: {FAKE_KEY}, base_url: '{urls['anthropic']}', "
        f"models: [{models}]}}\n"
        "  bedrock: {type: bedrock, region: us-east-1, access_key_id: AKIDBENCH, "
        f"secret_access_key: bench-secret-key, base_url: '{urls['bedrock']}', "
        f"model_map: {{{bedrock_map}}}}}\n"
        f"  openai: {{type: openai, api_key: {FAKE_KEY}, base_url: '{urls['openai']}/v1', "
        f"model_map: {{{openai_map}}}}}\n"
    )
    return cfg


# --- measuring ------------------------------------------------------------------------------


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000


def _rps(url: str, work: Workload, plan: Plan, scripts: dict[str, Path], stream: bool) -> float:
    if plan.use_wrk:
        res = run_wrk(
            url,
            work,
            scripts[work.name],
            concurrency=16,
            duration_s=plan.rps_seconds,
            cpu=LOADGEN_CPU,
        )
        return res.rps if res.non_2xx + res.socket_errors == 0 else float("nan")
    run = uvloop.run(
        closed_loop(url, work, concurrency=16, duration_s=plan.rps_seconds, stream=stream)
    )
    return run.rps if run.errors == 0 else float("nan")


def measure(url: str, case: BodyCase, plan: Plan, scripts: dict[str, Path]) -> dict[str, Any]:
    sse = uvloop.run(
        closed_loop(url, case.sse, concurrency=1, duration_s=plan.latency_seconds, stream=True)
    )
    if sse.errors:
        raise RuntimeError(f"{url}: {sse.errors} failed SSE requests ({sse.statuses})")
    return {
        "ttfb_p50_ms": _ms(percentile(sse.ttfb_us, 50)),
        "ttfb_p99_ms": _ms(percentile(sse.ttfb_us, 99)),
        "sse_total_p50_ms": _ms(percentile(sse.latencies_us, 50)),
        "sse_rps_c16": _rps(url, case.sse, plan, scripts, True),
        "json_rps_c16": _rps(url, case.json, plan, scripts, False),
    }


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    out: dict[str, Any] = {}
    for target in TARGETS:
        cells = [r[target] for r in rounds]
        out[target] = {k: med([c[k] for c in cells]) for k in cells[0]}
    for kind in KINDS:
        added = [
            r[f"sluice-{kind}"]["ttfb_p50_ms"] - r[f"direct-{kind}"]["ttfb_p50_ms"] for r in rounds
        ]
        out[f"sluice-{kind}"]["added_ttfb_p50_ms"] = statistics.median(added)
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Translation benchmark ({result['meta']['mode']}, {result['meta']['rounds']} round(s), "
        f"{result['meta']['started']})",
        "",
    ]
    for body, summary in result["bodies"].items():
        lines += [
            f"### {body}",
            "",
            "| target | TTFB p50 ms | TTFB p99 ms | added TTFB p50 ms | SSE total p50 ms "
            "| SSE req/s c=16 | JSON req/s c=16 |",
            "|---|---|---|---|---|---|---|",
        ]
        for target in TARGETS:
            c = summary[target]
            added = c.get("added_ttfb_p50_ms")
            lines.append(
                f"| {target} | {_f(c['ttfb_p50_ms'])} | {_f(c['ttfb_p99_ms'])} | "
                f"{_f(added) if added is not None else '-'} | {_f(c['sse_total_p50_ms'])} | "
                f"{_f(c['sse_rps_c16'], 0)} | {_f(c['json_rps_c16'], 0)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run(plan: Plan, out: Path, keep: bool, commit: str | None) -> dict[str, Any]:
    wrk = ensure_wrk() if plan.use_wrk else None
    if plan.use_wrk and wrk is None:
        log("wrk unavailable: req/s from the Python client")
        plan = Plan(plan.rounds, plan.rps_seconds, plan.latency_seconds, use_wrk=False)
    tmp = scratch_dir()
    procs: list[Proc] = []
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        code = snapshot_code(tmp, commit)
        procs += [start_spinner(PROXY_CPU, tmp), start_spinner(LOADGEN_CPU, tmp)]
        fakes: dict[str, Proc] = {}
        for kind in KINDS:
            port = free_port()
            cmd = [sys.executable, str(Path(__file__)), "--serve-fake", kind, "--port", str(port)]
            fakes[kind] = start(f"fake-{kind}", cmd, port, LOADGEN_CPU, tmp)
            procs.append(fakes[kind])
        for fake in fakes.values():
            fake.wait_ready()
        cfg = write_config(tmp, {k: p.url for k, p in fakes.items()})
        keys = {k: mint_key(cfg, f"bench-{k}", {"providers_allowed": [k]}) for k in KINDS}
        port = free_port()
        serve = [*sluice_cmd(), "serve", "--config", str(cfg), "--port", str(port)]
        sluice = start("sluice", serve, port, PROXY_CPU, tmp)
        procs.append(sluice)
        sluice.wait_ready("/healthz")
        bodies: dict[str, Any] = {}
        for base in body_cases(keys["anthropic"]):
            targets: dict[str, tuple[str, BodyCase]] = {}
            for kind in KINDS:
                targets[f"direct-{kind}"] = (fakes[kind].url, direct_case(kind, base))
                targets[f"sluice-{kind}"] = (sluice.url, rekey(base, keys[kind], kind))
            scripts: dict[str, Path] = {}
            if plan.use_wrk:
                for _, case in targets.values():
                    for work in (case.json, case.sse):
                        scripts[work.name] = write_wrk_script(work, tmp)
            for url, case in targets.values():
                uvloop.run(closed_loop(url, case.sse, concurrency=16, count=200, stream=True))
                uvloop.run(closed_loop(url, case.json, concurrency=16, count=200))
            rounds: list[dict[str, dict[str, Any]]] = []
            for i in range(plan.rounds):
                order = TARGETS[i % len(TARGETS) :] + TARGETS[: i % len(TARGETS)]
                log(f"{base.name}: round {i + 1}/{plan.rounds}")
                rounds.append({t: measure(*targets[t], plan, scripts) for t in order})
            bodies[base.label] = summarize(rounds)
        result = {
            "meta": {
                "mode": "quick" if plan.rounds == 1 else "full",
                "rounds": plan.rounds,
                "started": started,
                "req_s_client": "wrk" if plan.use_wrk else "python",
                "code": code,
                "machine": machine_info(wrk),
            },
            "bodies": bodies,
        }
    finally:
        for proc in reversed(procs):
            proc.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s runs")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "translation.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, DB)")
    parser.add_argument("--commit", help="measure `git archive COMMIT src` instead of the tree")
    parser.add_argument("--no-wrk", action="store_true", help="req/s from the Python client")
    parser.add_argument("--serve-fake", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve_fake(args.serve_fake, args.port))
        return
    plan = QUICK if args.quick else FULL
    if args.no_wrk:
        plan = Plan(plan.rounds, plan.rps_seconds, plan.latency_seconds, use_wrk=False)
    run(plan, args.out, args.keep, args.commit)


if __name__ == "__main__":
    main()
