"""Limits at the connection edge, before auth: header size and count, header and body-read
timeouts, a per-process connection cap, and slowloris. Real sockets against a real gateway:
`sluice serve` as a process (so its RSS and latency are its own), or the in-process harness."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp

from sluice.base.clock import SystemClock
from sluice.governance.key_admin import KeyAdmin
from sluice.store.keys_repo import KeysRepo
from sluice.testing import FakeAnthropic
from sluice.testing.gateway import GatewayServer

from services import ensure_redis
from support import SECRET, Gateway, make_config

SLUICE = str(Path(sys.executable).parent / "sluice")
HEAD = b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n"
OK = HEAD + b"Connection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def serving(
    tmp_path: Path, server_yaml: str, *args: str, extra_yaml: str = ""
) -> Iterator[tuple[int, int]]:
    """`sluice serve` (demo mode) with extra ``server:`` settings; yields (port, pid)."""
    port = free_port()
    config = tmp_path / "sluice.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}, {server_yaml}}}\n"
        f"database: sqlite:///{tmp_path / 'edge.db'}\nsecret_key: s3cret\n"
        f"metrics: {{enabled: false}}\n{extra_yaml}"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "SLUICE_CONFIG")}
    log = (tmp_path / "serve.log").open("wb")  # a file, not a pipe: refusals log a line each
    proc = subprocess.Popen(
        [SLUICE, "serve", "--config", str(config), *args], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            with contextlib.suppress(OSError):
                if b" 200 " in roundtrip(port, OK, timeout=1)[:20]:
                    break
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def roundtrip(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        return read_until_closed(s)


def read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after the data counts as closed)."""
    chunks = []
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(s: socket.socket) -> bytes:
    """One response with a Content-Length, on a connection that stays open."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += s.recv(65536)
    _, headers, body = split_response(raw)
    while len(body) < int(headers["content-length"]):
        body += s.recv(65536)
    return raw


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def assert_error(raw: bytes, status: int, error_type: str) -> None:
    code, headers, body = split_response(raw)
    assert code == status, raw[:300]
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload["type"] == "error" and payload["error"]["type"] == error_type, payload
    assert payload["request_id"] == headers["request-id"]


def test_oversize_header_section_is_refused_without_reading_it(tmp_path: Path) -> None:
    with serving(tmp_path, "max_header_bytes: 65536") as (port, pid):
        # Just over the limit: the whole request fits in socket buffers, the answer is read.
        big = HEAD + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n"
        assert_error(roundtrip(port, big), 431, "request_too_large")
        # Many small headers adding up to more than the limit.
        many = HEAD + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(80)) + b"\r\n"
        assert_error(roundtrip(port, many), 431, "request_too_large")
        # 50 MB of header: the gateway closes early; the rest is never read.
        before = rss_kb(pid)
        sent = 0
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(HEAD + b"X-Big: ")
            piece = b"a" * 65536
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while sent < 50 * 1024 * 1024:
                    s.sendall(piece)
                    sent += len(piece)
        elapsed = time.monotonic() - started
        assert sent < 16 * 1024 * 1024, f"the gateway took {sent} bytes of header"
        assert elapsed < 5, elapsed
        assert rss_kb(pid) - before < 20_000, (before, rss_kb(pid))
        # And it still serves.
        assert b" 200 " in roundtrip(port, OK)[:20]


def test_too_many_headers_is_refused(tmp_path: Path) -> None:
    with serving(tmp_path, "max_headers: 50") as (port, _):
        ok = OK[:-2] + b"".join(b"X-H%d: v\r\n" % i for i in range(47)) + b"\r\n"
        assert b" 200 " in roundtrip(port, ok)[:20]
        over = HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(60)) + b"\r\n"
        assert_error(roundtrip(port, over), 431, "request_too_large")


def test_header_timeout_closes_the_connection(tmp_path: Path) -> None:
    with serving(tmp_path, "header_timeout_s: 0.5") as (port, _):
        # A head that never ends: 408 in the API's shape, then the connection closes.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            started = time.monotonic()
            s.sendall(HEAD + b"X-Slow: 1\r\n")
            raw = read_until_closed(s)
            took = time.monotonic() - started
        assert 0.4 < took < 2.0, took
        assert_error(raw, 408, "request_timeout")
        # A connection that never sends a byte is closed too, silently.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            started = time.monotonic()
            assert read_until_closed(s) == b""
            assert time.monotonic() - started < 2.0
        # A complete request is unaffected; so is a keep-alive connection's next request.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            for _ in range(2):
                s.sendall(HEAD + b"\r\n")
                assert read_response(s).startswith(b"HTTP/1.1 200 ")
                time.sleep(0.7)  # longer than the header timeout, shorter than keep-alive
            # The next head on that connection is timed from its first byte.
            started = time.monotonic()
            s.sendall(HEAD)
            raw = read_until_closed(s)
            assert 0.4 < time.monotonic() - started < 2.0
            assert_error(raw, 408, "request_timeout")


def test_workers_enforce_the_limits_too(tmp_path: Path) -> None:
    ensure_redis()  # several workers need shared counters
    workers = serving(
        tmp_path,
        "max_header_bytes: 4096",
        "--workers",
        "2",
        extra_yaml="redis: redis://127.0.0.1:6379/13\n",
    )
    with workers as (port, _):
        big = HEAD + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n"
        assert_error(roundtrip(port, big), 431, "request_too_large")
        assert b" 200 " in roundtrip(port, OK[:-2] + b"X-Ok: " + b"a" * 3000 + b"\r\n\r\n")[:20]


def test_connection_cap_answers_503(tmp_path: Path) -> None:
    with serving(tmp_path, "max_connections: 3") as (port, _):
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        try:
            time.sleep(0.2)  # let the gateway accept all three
            assert_error(roundtrip(port, OK), 503, "overloaded_error")
        finally:
            for s in held:
                s.close()
        time.sleep(0.2)
        assert b" 200 " in roundtrip(port, OK)[:20]


async def start_edge_gateway(tmp_path: Path, upstream: str, **server: object) -> Gateway:
    """The in-process harness (tests/support.py) with extra ``server`` settings."""
    config = make_config(tmp_path / "sluice.db", upstream)
    config = config.model_copy(update={"server": config.server.model_copy(update=server)})
    gw = GatewayServer(config)
    await gw.start()
    state = gw.app.services
    assert state.engine is not None
    admin = KeyAdmin(KeysRepo(state.engine), SECRET.encode(), SystemClock())
    return Gateway(gw, admin, await admin.create(name="edge"), tmp_path / "sluice.db")


@contextlib.asynccontextmanager
async def edge_gateway(tmp_path: Path, **server: object) -> AsyncIterator[Gateway]:
    async with FakeAnthropic() as fake:
        gw = await start_edge_gateway(tmp_path, fake.url, **server)
        try:
            yield gw
        finally:
            await gw.server.stop()


async def test_body_idle_timeout_closes_the_connection(tmp_path: Path) -> None:
    async with edge_gateway(tmp_path, body_idle_timeout_s=0.5) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
        head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: sluice\r\nx-api-key: {gw.key}\r\n"
            "content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
        ).encode()
        started = asyncio.get_running_loop().time()
        writer.write(head + b'{"model":')
        # Keep sending a byte now and then, faster than the timeout: not idle.
        for _ in range(4):
            await asyncio.sleep(0.3)
            writer.write(b" ")
        stalled = asyncio.get_running_loop().time()
        with contextlib.suppress(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 3)
        now = asyncio.get_running_loop().time()
        assert now - started > 1.1  # the trickle kept it open
        assert 0.3 < now - stalled < 1.5, now - stalled
        writer.close()


async def test_large_head_and_body_in_one_read_are_not_refused(tmp_path: Path) -> None:
    """A head just under the limit followed by a big body arrives in one chunk: only the head
    counts, through the in-process harness (which runs the same protocol)."""
    async with edge_gateway(tmp_path, max_header_bytes=8192) as gw, aiohttp.ClientSession() as s:
        body = json.dumps(
            {
                "model": "claude-opus-4-8",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "x" * 300_000}],
            }
        ).encode()
        headers = {"x-api-key": gw.key, "x-pad": "p" * 6000}
        async with s.post(f"{gw.url}/v1/messages", data=body, headers=headers) as r:
            assert r.status == 200, await r.text()
        headers["x-pad"] = "p" * 9000
        async with s.post(f"{gw.url}/v1/messages", data=body, headers=headers) as r:
            assert r.status == 431
            assert (await r.json())["error"]["type"] == "request_too_large"


async def _slowloris(port: int, n: int, interval: float) -> list[asyncio.Task[float]]:
    """``n`` connections that send a header line every ``interval`` s; each task returns the
    seconds from its connect until the gateway closed it."""
    loop = asyncio.get_running_loop()
    writers: list[asyncio.StreamWriter] = []
    open_ = [True] * n

    async def until_closed(i: int, started: float, reader: asyncio.StreamReader) -> float:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        open_[i] = False
        writers[i].close()
        return loop.time() - started

    async def trickle() -> None:
        for line in range(1000):
            await asyncio.sleep(interval)
            for i, writer in enumerate(writers):
                if open_[i]:
                    writer.write(b"X-Trickle-%d: 1\r\n" % line)

    tasks = []
    for i in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD)
        writers.append(writer)
        tasks.append(asyncio.ensure_future(until_closed(i, loop.time(), reader)))
    trickler = asyncio.ensure_future(trickle())
    for task in tasks:
        task.add_done_callback(lambda _: all(t.done() for t in tasks) and trickler.cancel())
    return tasks


async def _latency(port: int) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD + b"Connection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    assert b" 200 " in data[:20]
    return loop.time() - started


async def test_slowloris_connections_are_closed_and_do_not_delay_others(tmp_path: Path) -> None:
    n = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * n), hard))
    timeout_s = 2.0
    with serving(tmp_path, f"header_timeout_s: {timeout_s}") as (port, _):
        baseline = [await _latency(port) for _ in range(20)]
        clients = asyncio.ensure_future(_slowloris(port, n, 0.5))
        await asyncio.sleep(0.5)
        during = []
        for _ in range(20):
            during.append(await _latency(port))
            await asyncio.sleep(0.05)
        closed_after = await asyncio.wait_for(asyncio.gather(*await clients), 15)
    assert len(closed_after) == n
    # Slack for a shared 2-core machine (load average 15+ here): the timer itself fires on time.
    assert max(closed_after) < timeout_s + 2.0, sorted(closed_after)[-5:]
    assert statistics.median(closed_after) < timeout_s + 0.5, statistics.median(closed_after)
    delay = statistics.median(during) - statistics.median(baseline)
    assert delay < 0.050, (statistics.median(baseline), statistics.median(during))


async def test_chunked_body_passes_and_an_endless_trailer_is_cut(tmp_path: Path) -> None:
    """httptools buffers a trailer section whole, as it does a head: the same cap applies."""
    async with edge_gateway(tmp_path, max_header_bytes=8192) as gw:
        body = json.dumps(
            {
                "model": "claude-opus-4-8",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "x" * 200_000}],
            }
        ).encode()
        head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: sluice\r\nx-api-key: {gw.key}\r\n"
            "content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        ).encode()
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 50_000]), body[i : i + 50_000])
            for i in range(0, len(body), 50_000)
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
        writer.write(head + chunks + b"0\r\nX-Trailer: ok\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200 ")
        writer.close()
        # A trailer that never ends: cut once it is over the cap, not buffered forever.
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
        writer.write(head + chunks + b"0\r\nX-Trailer: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                writer.write(b"t" * 16384)
                await writer.drain()
                sent += 16384
                if reader.at_eof():
                    break
                await asyncio.sleep(0.005)
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), 2)
        assert reader.at_eof()
        assert sent < 1_000_000, sent
        writer.close()
