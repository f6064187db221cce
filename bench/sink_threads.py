"""Where tracing's CPU goes: the span sink's threads, one by one, per request.

One ``sluice serve`` with tracing on (fastotel, exporting to ``otlp_sink.py``, the local store
on) is loaded with wrk (c=16, pinned as in overhead.py); the span sink is its child process.
The CPU each of the sink's threads used during the load (from ``/proc/PID/task``) is divided
by the requests served, and so is the gateway's. ``ab_simultaneous.py --otlp`` says how much
tracing costs in all; this says which thread of the sink spends it. Thread names are the
kernel's (Python threads all show as the interpreter; fastotel names its export thread).

    .venv/bin/python bench/sink_threads.py [--body cc76k] [--seconds 10] [--sse] [--py-spy DIR]

``--py-spy DIR``: also record both processes (``DIR/gateway.raw``, ``DIR/sink.raw``; read them
with ``profile_summary.py``); the sampling itself costs CPU, so the figures printed then are
not the unprofiled ones. Not a test: CI never runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bodies import body_cases, long_turn_case
from loadgen import ensure_wrk, run_wrk, write_wrk_script
from overhead import LOADGEN_CPU, PROXY_CPU, mint_key, sluice_cmd, write_config
from procs import Proc, free_port, process_cpu_s, start, start_upstream, thread_cpu_s

BENCH = Path(__file__).resolve().parent


def python_thread_names(pid: int) -> dict[str, str]:
    """OS thread id -> Python thread name, from ``py-spy dump`` (empty without py-spy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    dump = subprocess.run(
        [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    found = re.findall(r'^Thread (\d+) \(\w+\): "([^"]*)"', dump, re.MULTILINE)
    return dict(found)


def sink_pid(gateway: int) -> int:
    """The gateway's span-sink child (not multiprocessing's resource tracker)."""
    children = subprocess.run(
        ["pgrep", "-P", str(gateway)], capture_output=True, text=True, check=False
    ).stdout.split()
    for child in children:
        with open(f"/proc/{child}/cmdline", "rb") as f:
            cmdline = f.read()
        if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
            return int(child)
    raise RuntimeError("no span-sink process under the gateway (is tracing on?)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", default="cc76k", choices=("small", "cc76k", "cc124k", "cc-long"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--sse", action="store_true", help="the streaming request, not JSON")
    parser.add_argument("--py-spy", type=Path, help="also record both processes here")
    args = parser.parse_args()
    if ensure_wrk() is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="sluice-sink-threads-"))
    procs: list[Proc] = []
    try:
        upstream = start_upstream(LOADGEN_CPU, tmp)
        procs.append(upstream)
        upstream.wait_ready()
        port = free_port()
        receiver = start(
            "otlp", [sys.executable, str(BENCH / "otlp_sink.py"), "--port", str(port)], port,
            LOADGEN_CPU, tmp,
        )  # fmt: skip
        procs.append(receiver)
        receiver.wait_ready()
        tracing = (
            "tracing:\n  enabled: true\n  exporter: fastotel\n"
            f"  otlp_endpoint: http://127.0.0.1:{port}/v1/traces"
        )
        cfg = write_config(tmp, upstream.url, extra_yaml=tracing)
        key = mint_key(cfg)
        gateway_port = free_port()
        cfg.write_text(cfg.read_text().replace("port: 4000", f"port: {gateway_port}"))
        gateway = start(
            "sluice", [*sluice_cmd(), "serve", "--config", str(cfg)], gateway_port, PROXY_CPU, tmp
        )
        procs.append(gateway)
        gateway.wait_ready()
        case = {c.name: c for c in (*body_cases(key), long_turn_case(key))}[args.body]
        work = case.sse if args.sse else case.json
        script = write_wrk_script(work, tmp)
        # Warm up until the sink has started (it imports the SDK) and taken batches.
        run_wrk(gateway.url, work, script, concurrency=16, duration_s=8, cpu=LOADGEN_CPU)
        sink = sink_pid(gateway.pid)
        spies = []
        if args.py_spy is not None:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            for name, pid in (("gateway", gateway.pid), ("sink", sink)):
                out = args.py_spy / f"{name}.raw"
                cmd = [spy, "record", "--pid", str(pid), "--rate", "400", "--nonblocking"]
                cmd += ["--duration", str(args.seconds), "--format", "raw", "-o", str(out)]
                spies.append(
                    subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
        names = python_thread_names(sink)  # the executors' threads exist once warm
        before = (process_cpu_s(gateway.pid), thread_cpu_s(sink))
        result = run_wrk(
            gateway.url, work, script, concurrency=16, duration_s=args.seconds, cpu=LOADGEN_CPU
        )
        after = (process_cpu_s(gateway.pid), thread_cpu_s(sink))
        for spied in spies:
            spied.wait()
        served = result.requests
        threads = {
            f"{key} {names.get(key.split()[0], '')}".strip(): round(
                (cpu - before[1].get(key, 0.0)) / served * 1e6, 1
            )
            for key, cpu in after[1].items()
            if cpu > before[1].get(key, 0.0)
        }
        report = {
            "body": args.body,
            "sse": args.sse,
            "requests": served,
            "req_per_s": round(served / result.duration_s),
            "gateway_us_per_request": round((after[0] - before[0]) / served * 1e6, 1),
            "sink_us_per_request": round(sum(threads.values()), 1),
            "sink_threads_us_per_request": threads,
        }
        print(json.dumps(report, indent=2))
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
