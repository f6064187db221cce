"""Child processes for the benchmark: start pinned to a core, wait until ready, measure, stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass
class Proc:
    """A started child: its name, port and Popen handle; logs go to ``log_path``."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, health_path: str | None = None, timeout_s: float = 30.0) -> None:
        """Poll GET ``health_path`` for 200 (or a TCP connect when None) until ready."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.popen.returncode}): {self.log_tail()}"
                )
            ready = _http_ok(self.url + health_path) if health_path else _tcp_open(self.port)
            if ready:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:g}s: {self.log_tail()}")

    def log_tail(self, n: int = 800) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) in KiB, from /proc/PID/status."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (0 once it is gone)."""
        return process_cpu_s(self.pid)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; only this child, by its pid."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout_s)


# Stops by itself when the driver is gone or after 30 minutes, whatever happens to the driver.
_SPIN = (
    "import os, sys, time\n"
    "parent = os.getppid()\n"
    "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
    "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
    "deadline = time.monotonic() + 1800\n"
    "while os.getppid() == parent and time.monotonic() < deadline:\n"
    "    for _ in range(20000):\n"
    "        pass\n"
)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the driver dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_spinner(cpu: int, log_dir: Path) -> Proc:
    """A SCHED_IDLE busy loop on ``cpu``: it runs only when nothing else wants the core.

    In a VM an idle vCPU halts, and waking it costs the host a reschedule (ms, not µs); at c=1
    every request crosses cores 4 times. Keeping both cores awake removes that artifact.
    """
    return start(f"spinner{cpu}", [sys.executable, "-c", _SPIN, str(cpu)], 0, None, log_dir)


def system_busy_seconds() -> float:
    """CPU time all processes used so far: user, nice, system. Not irq/softirq (loopback TCP
    work is accounted there, not to the process that caused it), not idle/iowait/steal."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system = (int(f) for f in fields[:3])
    return (user + nice + system) / _CLK_TCK


def kernel_threads_cpu_seconds() -> float:
    """CPU time of kernel threads (children of kthreadd, pid 2), e.g. ksoftirqd, which runs the
    loopback TCP work of a busy benchmark; not "other processes" for our purposes."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[1] == "2" or stat.parent.name == "2":
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def named_cpu_seconds(names: frozenset[str]) -> float:
    """CPU time of every process whose command name is in ``names`` (e.g. the local postgres
    and redis-server that the PostgreSQL + Redis row drives: the benchmark's work, not noise)."""
    total = 0
    if not names:
        return 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.index("(") + 1 : text.rindex(")")] in names:
            fields = text[text.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def own_cpu_seconds(procs: list[Proc]) -> float:
    """CPU time of this process, its waited-for children (wrk runs) and the live ``procs``."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    for proc in procs:
        if proc.popen.poll() is None:
            with contextlib.suppress(OSError):
                total += proc.cpu_seconds()
    return total


def start(
    name: str,
    cmd: list[str],
    port: int,
    cpu: int | None,
    log_dir: Path,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start ``cmd`` pinned to ``cpu`` with taskset (which execs, so the pid is the server's).

    ``env``: the child's whole environment (None: this process's), e.g. another ``PYTHONPATH``.
    """
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
    return Proc(name, port, popen, log_path)


def start_upstream(cpu: int | None, log_dir: Path) -> Proc:
    """The benchmarks' fake upstream (``bench/upstream.py``) on a free port, pinned to ``cpu``.
    Not waited for: the caller starts its other processes meanwhile, then ``wait_ready()``."""
    port = free_port()
    script = Path(__file__).resolve().parent / "upstream.py"
    return start("upstream", [sys.executable, str(script), "--port", str(port)], port, cpu, log_dir)


def _stat_cpu_s(path: str) -> float:
    """User + system CPU seconds from a ``/proc`` stat file; 0 once it is gone."""
    try:
        stat = Path(path).read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_cpu_s(pid: int) -> float:
    """A process's user + system CPU seconds from /proc; 0 once it is gone."""
    return _stat_cpu_s(f"/proc/{pid}/stat")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid``, keyed ``tid name`` (``main`` for its first)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        path = f"/proc/{pid}/task/{tid}/stat"
        try:
            raw = Path(path).read_text()
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        name = "main" if int(tid) == pid else raw[raw.index("(") + 1 : raw.rindex(")")]
        out[f"{tid} {name}"] = _stat_cpu_s(path)
    return out


def settled_cpu_s(
    pids: list[int], cpu_of: Callable[[int], float] = process_cpu_s, quiet_s: float = 0.005
) -> float:
    """CPU seconds of ``pids`` once they have stopped using more than ``quiet_s`` per 0.3 s:
    tracing's span sink trails the load by a flush interval or two, so each run is charged
    for its own spans, not the previous run's."""
    last = sum(cpu_of(p) for p in pids)
    while True:
        time.sleep(0.3)
        now = sum(cpu_of(p) for p in pids)
        if now - last < quiet_s:
            return now
        last = now
