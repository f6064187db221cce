"""Load generators: a closed-loop aiohttp client (latency, SSE TTFB) and a ``wrk`` driver (req/s).

The aiohttp client runs N workers on keep-alive connections; each sends its next request as soon
as the previous response has been read to the end. It records per-request latency (request
start to the last body byte) and, for SSE, the time to the first body byte. Python's client
costs ~100-200 µs of CPU per request, so at high rates it can saturate before the target does:
``wrk`` (C, one thread) is used for throughput when it is installed.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


@dataclass(frozen=True)
class Workload:
    """One request to send over and over: a URL path, a body and headers."""

    name: str
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_us: list[float] = field(default_factory=list)
    ttfb_us: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None when there is nothing to rank."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


async def _one(
    session: aiohttp.ClientSession, url: str, work: Workload, stream: bool, result: LoadResult
) -> None:
    started = time.perf_counter()
    first: float | None = None
    async with session.post(url, data=work.body, headers=list(work.headers)) as resp:
        if stream:
            chunk = await resp.content.readany()
            first = time.perf_counter()
            while chunk:
                chunk = await resp.content.readany()
        else:
            await resp.read()
        status = resp.status
    done = time.perf_counter()
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if status != 200:
        result.errors += 1
        return
    result.requests += 1
    result.latencies_us.append((done - started) * 1e6)
    if first is not None:
        result.ttfb_us.append((first - started) * 1e6)


async def closed_loop(
    base_url: str,
    work: Workload,
    *,
    concurrency: int = 1,
    duration_s: float | None = 2.0,
    count: int | None = None,
    stream: bool = False,
    warmup: int = 20,
) -> LoadResult:
    """Run ``concurrency`` workers until ``duration_s`` has passed or ``count`` requests are done.

    ``warmup`` requests per worker open the connections first and are not counted.
    """
    url = base_url + work.path
    result = LoadResult()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as session:
        scratch = LoadResult()
        await asyncio.gather(
            *(_one(session, url, work, stream, scratch) for _ in range(concurrency * warmup))
        )
        deadline = time.perf_counter() + duration_s if duration_s is not None else math.inf
        budget = [count if count is not None else math.inf]

        async def worker() -> None:
            while time.perf_counter() < deadline and budget[0] > 0:
                budget[0] -= 1
                try:
                    await _one(session, url, work, stream, result)
                except (aiohttp.ClientError, TimeoutError):
                    result.errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - started
    return result


# --- wrk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    p50_us: float
    p99_us: float
    mean_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"non_2xx\\":%d,\\"socket_errors\\":%d," ..
    "\\"p50\\":%d,\\"p99\\":%d,\\"mean\\":%f}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""
_SAFE_HEADER = re.compile(r"^[\x20-\x7e]*$")


def _lua_string(value: str) -> str:
    if not _SAFE_HEADER.match(value):
        raise ValueError(f"header value not printable ASCII: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_wrk_script(work: Workload, directory: Path) -> Path:
    """A Lua script that POSTs ``work`` (the body is read from a file next to it)."""
    body_file = directory / f"{work.name}.body"
    body_file.write_bytes(work.body)
    lines = [
        'wrk.method = "POST"',
        f'local f = assert(io.open({_lua_string(str(body_file))}, "rb"))',
        "wrk.body = f:read('*a')",
        "f:close()",
    ]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in work.headers]
    script = directory / f"{work.name}.lua"
    script.write_text("\n".join(lines) + "\n" + _DONE)
    return script


def wrk_path() -> str | None:
    return shutil.which("wrk")


def ensure_wrk() -> str | None:
    """wrk's path, installing the Debian package when missing (root only); None if unavailable."""
    found = wrk_path()
    if found is not None or shutil.which("apt-get") is None:
        return found
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=180)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=True,
            capture_output=True,
            timeout=180,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return wrk_path()


def run_wrk(
    base_url: str,
    work: Workload,
    script: Path,
    *,
    concurrency: int,
    duration_s: int,
    cpu: int | None = None,
) -> WrkResult:
    """One wrk run with one thread and ``concurrency`` keep-alive connections."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    cmd = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
    ]
    cmd.append(base_url + work.path)
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 30, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line.removeprefix("WRKJSON "))
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=data["duration_us"] / 1e6,
                non_2xx=int(data["non_2xx"]),
                socket_errors=int(data["socket_errors"]),
                p50_us=float(data["p50"]),
                p99_us=float(data["p99"]),
                mean_us=float(data["mean"]),
            )
    raise RuntimeError(f"wrk printed no result (rc={out.returncode}): {out.stderr.strip()[:300]}")


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sluice-bench-"))
