"""Soak: N minutes of 200 concurrent streams through one `sluice serve`, with upstream faults
and client disconnects; does memory or the fd count creep, and does every request get its row?

    .venv/bin/python bench/soak.py                 # 30 minutes, 200 streams
    .venv/bin/python bench/soak.py --minutes 1     # a smoke run

One `sluice serve` (SQLite ledger, one worker, auth on) in front of a fake Anthropic upstream
(its own process: ``soak.py --upstream``) that picks a fault for each request, from a seeded
mix (``MIX``): most streams are whole (~6 s each), the rest are dropped mid-way (TCP abort),
answered 529, ended by a mid-stream ``event: error``, slow (3 s to the first byte, slow
events), or go silent mid-stream (ended by ``stream_idle_timeout_s`` when the gateway has that
setting, else by the client's own timeout). The load is closed-loop: 200 client tasks, each
sending its next streamed request as soon as the last one ends; ``--disconnect`` of them close
the connection after a few chunks.

Every 10 s the driver reads the gateway's VmRSS (/proc/PID/status) and open fds
(/proc/PID/fd). At the end it stops the load, lets the gateway settle, stops it (which flushes
the ledger) and matches the SQLite ledger against what the clients saw, by request id: a row
for every response, status 200 for every 200, ``client_disconnected`` for every disconnect.
Prints a Markdown table at 1-minute resolution and the totals; writes both to ``--out``
(default ``bench/results/soak.md``) and the samples to the JSON next to it. The gateway runs
from a copy of ``src/`` taken at the start, so editing the tree during a run changes nothing.
Not a test, not run in CI. Nothing is pinned: it runs on whatever cores are free.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import uvloop

from sluice.testing.fake_anthropic import FakeAnthropic
from sluice.testing.scenarios import Fault, Reply, Scenario, TextBlock

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MODEL = "claude-haiku-4-5-20251001"
SAMPLE_EVERY_S = 10.0
IDLE_TIMEOUT_S = 10  # providers.<id>.stream_idle_timeout_s in the soak's config
CLIENT_TIMEOUT_S = 60.0  # the client's own bound on a request

# A whole stream: 24 text deltas, 0.25 s apart, ~30 events: about 6 s.
_REPLY = Reply(blocks=[TextBlock("soak " * 120, chunks=24)])
_EVENT_DELAY = 0.25
# (share, label, fault). The labels name the fake's choice in its log; the ledger is matched
# by request id, not by label.
MIX: tuple[tuple[float, str, Fault], ...] = (
    (0.06, "drop", Fault(event_delay=_EVENT_DELAY, drop_after_events=8)),
    (0.06, "529", Fault(status=529)),
    (0.04, "sse_error", Fault(event_delay=_EVENT_DELAY, error_after_events=6)),
    (0.06, "slow", Fault(first_byte_delay=3.0, event_delay=0.5)),
    (0.02, "hang", Fault(event_delay=_EVENT_DELAY, hang_after_events=5)),
)


# --- the upstream (its own process) --------------------------------------------------------


class MixedFake(FakeAnthropic):
    """FakeAnthropic that draws each request's fault from ``MIX`` (seeded: reproducible)."""

    def __init__(self, seed: int, **kwargs: object) -> None:
        super().__init__(Scenario(_REPLY, Fault(event_delay=_EVENT_DELAY)), **kwargs)  # type: ignore[arg-type]
        self._rng = random.Random(seed)
        self.picked: Counter[str] = Counter()

    def _next_scenario(self) -> Scenario:
        roll = self._rng.random()
        for share, label, fault in MIX:
            if roll < share:
                self.picked[label] += 1
                return Scenario(_REPLY, fault)
            roll -= share
        self.picked["whole"] += 1
        return self._default


async def serve_upstream(port: int, seed: int) -> None:
    fake = MixedFake(seed, port=port, max_recorded=100)
    async with fake:
        print(f"soak upstream on {fake.url}", flush=True)
        while True:
            await asyncio.sleep(60)
            print(f"picked so far: {dict(fake.picked)}", flush=True)


# --- the driver ----------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the client saw it."""

    request_id: str | None
    status: int | None
    outcome: str  # complete | error_frame | truncated | disconnect | http | client_error
    ended: float  # monotonic


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_kib: int
    hwm_kib: int
    fds: int
    done: int  # requests finished so far


@dataclass
class Run:
    seen: list[Seen] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


def _body(stream_no: int) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "max_tokens": 1024,
            "stream": True,
            "messages": [{"role": "user", "content": f"soak request {stream_no}"}],
        }
    )


def _outcome(status: int, data: bytes) -> str:
    if status != 200:
        return "http"
    if b"event: error" in data:
        return "error_frame"
    return "complete" if b"event: message_stop" in data else "truncated"


async def _one(
    session: aiohttp.ClientSession, url: str, key: str, n: int, cut_after: int | None
) -> Seen:
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    rid: str | None = None
    status: int | None = None
    try:
        async with session.post(url, data=_body(n), headers=headers) as resp:
            rid, status = resp.headers.get("request-id"), resp.status
            if cut_after is not None and status == 200:
                data = b""
                for _ in range(cut_after):
                    chunk = await resp.content.readany()
                    if not chunk:  # the stream ended first: not a disconnect
                        return Seen(rid, status, _outcome(status, data), time.monotonic())
                    data += chunk
                if b"event: message_stop" in data or b"event: error" in data:
                    return Seen(rid, status, _outcome(status, data), time.monotonic())
                resp.close()  # drop the connection mid-stream
                return Seen(rid, status, "disconnect", time.monotonic())
            data = await resp.read()
    except (aiohttp.ClientError, TimeoutError):
        return Seen(rid, status, "client_error", time.monotonic())
    return Seen(rid, status, _outcome(status, data), time.monotonic())


async def _client(
    url: str, key: str, deadline: float, rng: random.Random, share: float, run: Run, i: int
) -> None:
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    # One connection per client task, like one Claude Code session.
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        n = 0
        while time.monotonic() < deadline:
            cut = rng.randint(1, 8) if rng.random() < share else None
            run.seen.append(await _one(session, url, key, i * 1_000_000 + n, cut))
            n += 1


def _proc_sample(pid: int, t: float, done: int) -> Sample:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(rest.split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(round(t, 1), fields["VmRSS"], fields["VmHWM"], fds, done)


async def _sampler(pid: int, started: float, deadline: float, run: Run) -> None:
    while True:
        now = time.monotonic()
        run.samples.append(_proc_sample(pid, now - started, len(run.seen)))
        if now >= deadline:
            return
        await asyncio.sleep(min(SAMPLE_EVERY_S, max(0.0, deadline - now)))


async def drive(url: str, key: str, pid: int, args: argparse.Namespace, run: Run) -> float:
    started = time.monotonic()
    deadline = started + args.minutes * 60
    rng = random.Random(args.seed)
    clients = [
        _client(url, key, deadline, random.Random(rng.random()), args.disconnect, run, i)
        for i in range(args.streams)
    ]
    await asyncio.gather(_sampler(pid, started, deadline, run), *clients)
    return started


# --- the gateway -------------------------------------------------------------------------


def _frozen_code(tmp: Path) -> Path:
    """A copy of src/ for the gateway to import: edits made during the run don't reach it."""
    dest = tmp / "code" / "src"
    shutil.copytree(REPO / "src", dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _has_idle_timeout(env: dict[str, str]) -> bool:
    probe = (
        "from sluice.config.providers import _ProviderBase as P;"
        " print('stream_idle_timeout_s' in P.model_fields)"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    return out.stdout.strip() == "True"


def _write_config(tmp: Path, upstream_url: str, idle: bool) -> Path:
    cfg = tmp / "sluice.yaml"
    idle_line = f", stream_idle_timeout_s: {IDLE_TIMEOUT_S}" if idle else ""
    cfg.write_text(
        "server: {host: 127.0.0.1, port: 4000, log_level: warning}\n"
        f"database: sqlite:///{tmp}/sluice.db\n"
        "secret_key: soak-secret\n"
        "metrics: {port: 0}\n"
        "providers:\n"
        "  anthropic-primary: {type: anthropic, api_key: sk-ant-soak, "
        f'base_url: "{upstream_url}", models: [{MODEL}]{idle_line}}}\n'
    )
    return cfg


def _sluice() -> str:
    found = Path(sys.executable).with_name("sluice")
    return str(found) if found.exists() else "sluice"


def _start(name: str, cmd: list[str], tmp: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (tmp / f"{name}.log").open("wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process exited ({proc.returncode})")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout_s:g}s")


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the report --------------------------------------------------------------------------


def _ledger(db: Path) -> dict[str, tuple[int, str | None, bool]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT request_id, status, error_code, client_disconnected FROM ledger"
        )
        return {rid: (status, code, bool(gone)) for rid, status, code, gone in rows}


def _minute_table(run: Run, started: float, minutes: int) -> list[str]:
    lines = [
        "| minute | RSS MiB (end) | RSS MiB (max in minute) | open fds (end) | open fds (max)"
        " | requests ended | whole 200 | error frame | disconnects | 529 | client errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_minute: dict[int, Counter[str]] = {}
    for seen in run.seen:
        minute = min(int((seen.ended - started) // 60), max(minutes - 1, 0))
        c = by_minute.setdefault(minute, Counter())
        c["ended"] += 1
        c[seen.outcome] += 1
        if seen.status == 529:
            c["529"] += 1
    for minute in range(minutes):
        samples = [s for s in run.samples if minute * 60 < s.t <= (minute + 1) * 60]
        if minute == 0:
            samples = [s for s in run.samples if s.t <= 60]
        if not samples:
            continue
        end = samples[-1]
        c = by_minute.get(minute, Counter())
        lines.append(
            f"| {minute + 1} | {end.rss_kib / 1024:.1f}"
            f" | {max(s.rss_kib for s in samples) / 1024:.1f} | {end.fds}"
            f" | {max(s.fds for s in samples)} | {c['ended']:,} | {c['complete']:,}"
            f" | {c['error_frame']:,} | {c['disconnect']:,} | {c['529']:,}"
            f" | {c['client_error']:,} |"
        )
    return lines


def _reconcile(run: Run, ledger: dict[str, tuple[int, str | None, bool]]) -> list[str]:
    with_id = [s for s in run.seen if s.request_id is not None]
    missing = [s for s in with_id if s.request_id not in ledger]
    ok200 = [s for s in with_id if s.status == 200]
    rows200 = sum(1 for s in ok200 if s.request_id in ledger and ledger[s.request_id][0] == 200)
    gone = [s for s in with_id if s.outcome == "disconnect"]
    rows_gone = sum(1 for s in gone if s.request_id in ledger and ledger[s.request_id][2])
    # A cut that lands after the gateway's last byte (often an error frame the client had not
    # read yet) is an ended stream to the gateway, rightly: its row says how it ended.
    late_cuts = Counter(
        ledger[s.request_id][1] or "-"
        for s in gone
        if s.request_id in ledger and not ledger[s.request_id][2]
    )
    status_mismatch = sum(
        1 for s in with_id if s.request_id in ledger and ledger[s.request_id][0] != s.status
    )
    ids = {s.request_id for s in with_id}
    extra = sum(1 for rid in ledger if rid not in ids)
    codes = Counter(code or "-" for rid, (_, code, _) in ledger.items() if rid in ids)
    outcomes = Counter(s.outcome for s in run.seen)
    return [
        "| what | count |",
        "|---|---|",
        f"| requests ended (client side) | {len(run.seen):,} |",
        f"| ... with a response head (a request id) | {len(with_id):,} |",
        f"| ledger rows | {len(ledger):,} |",
        f"| responses with no ledger row | {len(missing):,} |",
        f"| ledger rows no client saw (no head reached the client) | {extra:,} |",
        f"| client got 200 / rows with status 200 for them | {len(ok200):,} / {rows200:,} |",
        f"| rows whose status differs from the client's | {status_mismatch:,} |",
        f"| client disconnects / rows marked client_disconnected | {len(gone):,} / {rows_gone:,} |",
        "",
        "Client cuts whose row is not marked (the stream had ended first), by the row's error"
        " code: " + (", ".join(f"{k} {v:,}" for k, v in late_cuts.items()) or "none"),
        "",
        "Client outcomes: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1])),
        "",
        "Ledger error codes (rows of these requests): "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(codes.items(), key=lambda kv: -kv[1])),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument(
        "--disconnect", type=float, default=0.05, help="share of clients' requests cut mid-stream"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "soak.md")
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve_upstream(args.port, args.seed))
        return
    soak(args)


def soak(args: argparse.Namespace) -> None:
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    env = {**os.environ, "PYTHONPATH": str(_frozen_code(tmp))}
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    up_port, gw_port = _free_port(), _free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_cmd = [
            sys.executable,
            __file__,
            "--upstream",
            "--port",
            str(up_port),
            "--seed",
            str(args.seed),
        ]
        upstream = _start("upstream", up_cmd, tmp, env)
        procs.append(upstream)
        idle = _has_idle_timeout(env)
        cfg = _write_config(tmp, f"http://127.0.0.1:{up_port}", idle)
        key_cmd = [_sluice(), "keys", "create", "--name", "soak", "--config", str(cfg), "--json"]
        out = subprocess.run(key_cmd, env=env, capture_output=True, text=True, check=True)
        key = str(json.loads(out.stdout)["key"])
        serve = [_sluice(), "serve", "--config", str(cfg), "--port", str(gw_port)]
        gateway = _start("sluice", serve, tmp, env)
        procs.append(gateway)
        _wait_http(f"http://127.0.0.1:{gw_port}/healthz", gateway)
        print(f"soak: {args.minutes} min, {args.streams} streams, scratch {tmp}", file=sys.stderr)
        run = Run()
        url = f"http://127.0.0.1:{gw_port}/v1/messages?beta=true"
        started = uvloop.run(drive(url, key, gateway.pid, args, run))
        time.sleep(5)  # let the last rows reach the ledger queue
        settled = _proc_sample(gateway.pid, time.monotonic() - started, len(run.seen))
        time.sleep(25)  # past the upstream pool's keep-alive (15 s): its idle sockets close
        final = _proc_sample(gateway.pid, time.monotonic() - started, len(run.seen))
        _stop(gateway)
        ledger = _ledger(tmp / "sluice.db")
    finally:
        for proc in reversed(procs):
            _stop(proc)
    report = [
        f"Soak: {args.minutes} min, {args.streams} concurrent streams, disconnect share"
        f" {args.disconnect:.0%}, seed {args.seed}, code {commit} (frozen copy),"
        f" stream_idle_timeout_s {'=' + str(IDLE_TIMEOUT_S) if idle else 'not supported'}.",
        "Upstream mix: "
        + ", ".join(f"{label} {share:.0%}" for share, label, _ in MIX)
        + ", the rest whole.",
        "",
        *_minute_table(run, started, args.minutes),
        "",
        f"After the load: +5 s RSS {settled.rss_kib / 1024:.1f} MiB, open fds {settled.fds};"
        f" +30 s RSS {final.rss_kib / 1024:.1f} MiB, open fds {final.fds};"
        f" peak RSS {final.hwm_kib / 1024:.1f} MiB.",
        "",
        *_reconcile(run, ledger),
    ]
    text = "\n".join(report) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    samples = [s.__dict__ for s in run.samples]
    args.out.with_suffix(".json").write_text(json.dumps({"samples": samples}, indent=1))


if __name__ == "__main__":
    main()
