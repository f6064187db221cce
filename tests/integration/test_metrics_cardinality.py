"""Prometheus label cardinality (issue #11, item 2): 20,000 invented dated model names, each
routed and answered 404 by the upstream, must not grow ``/metrics``, the gateway's memory or
the time a scrape takes; and a scrape must never hold up a request.

The gateway runs as a real `sluice serve` process, so its RSS is its own (/proc/PID/status).
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from test_serve import SLUICE, clean_env, cli, free_port

from sluice.base.clock import SystemClock
from sluice.governance.key_admin import KeyAdmin
from sluice.store.keys_repo import KeysRepo
from sluice.testing import FakeAnthropic, ServerThread
from sluice.testing.gateway import GatewayServer

from support import SECRET, make_config

INVENTED = 20_000
# As many requests as the flood, on one name: a gateway's RSS grows ~15-19 MB over its first
# ~20k requests of any kind (the same with one name repeated), so measure from there.
WARM_UP = 20_000
CONCURRENCY = 32
KNOWN = "claude-haiku-4-5-20251001"


def body(model: str) -> bytes:
    return (
        b'{"model":"%s","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'
        % model.encode()
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@asynccontextmanager
async def gateway(tmp_path: Path, upstream: str) -> AsyncIterator[tuple[str, str, int, str]]:
    """(gateway url, metrics url, pid, key): a `sluice serve` process; its log goes to a file
    (a pipe nobody reads would fill up and stall it)."""
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "sluice.yaml"
    config.write_text(
        f"""
server: {{host: 127.0.0.1, port: {port}, log_level: warning}}
metrics: {{port: {metrics_port}}}
database: sqlite:///{tmp_path / "sluice.db"}
secret_key: test-hmac-secret
providers:
  anthropic-primary:
    type: anthropic
    api_key: sk-ant-upstream-provider-key-0123456789
    base_url: "{upstream}"
    models: [claude-opus-4-8, claude-sonnet-5, {KNOWN}]
"""
    )
    key = json.loads(
        await cli(tmp_path, "keys", "create", "--name", "k", "--json", "--config", str(config))
    )["key"]
    with (tmp_path / "serve.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            SLUICE, "serve", "--config", str(config), "--port", str(port),
            cwd=tmp_path, env=clean_env(), stdout=log, stderr=log,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as s:
                for _ in range(400):
                    try:
                        async with s.get(f"{url}/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    assert proc.returncode is None, (tmp_path / "serve.log").read_text()
                    await asyncio.sleep(0.05)
            yield url, f"http://127.0.0.1:{metrics_port}/metrics", proc.pid, key
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def flood(s: aiohttp.ClientSession, url: str, key: str, names: Iterable[str]) -> set[int]:
    """POST one message per name, CONCURRENCY at a time; the statuses seen."""
    pending = iter(names)
    seen: set[int] = set()

    async def worker() -> None:
        for name in pending:
            async with s.post(
                f"{url}/v1/messages", data=body(name), headers={"x-api-key": key}
            ) as r:
                await r.read()
                seen.add(r.status)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return seen


async def timed(coro_fn, *args):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = await coro_fn(*args)
    return time.perf_counter() - started, result


async def test_invented_model_names_leave_metrics_memory_and_scrapes_flat(tmp_path: Path) -> None:
    async with (
        FakeAnthropic(max_recorded=100, reject_unknown_models=True) as fake,
        gateway(tmp_path, fake.url) as (url, metrics_url, pid, key),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY + 8)) as s,
    ):

        async def scrape() -> bytes:
            async with s.get(metrics_url) as r:
                assert r.status == 200
                return await r.read()

        async def request() -> int:
            async with s.post(
                f"{url}/v1/messages", data=body(KNOWN), headers={"x-api-key": key}
            ) as r:
                await r.read()
                return r.status

        # Warm up on the same path (a dated name the upstream does not know), one name only.
        assert await flood(s, url, key, ["claude-made-up-20250101"] * WARM_UP) == {404}
        assert await request() == 200
        await asyncio.sleep(1.0)  # the ledger drains
        rss_before, size_before = rss_kib(pid), len(await scrape())

        names = (f"claude-made-up-{n}-2025{n % 10000:04d}" for n in range(INVENTED))
        assert await flood(s, url, key, names) == {404}
        await asyncio.sleep(1.0)
        rss_after = rss_kib(pid)
        page = await scrape()
        assert len(page) - size_before < 256 * 1024, (size_before, len(page))
        assert b"claude-made-up-1-" not in page  # invented names become "other"
        assert b'model="other"' in page and KNOWN.encode() in page
        assert rss_after <= rss_before * 1.10, (rss_before, rss_after)

        scrape_times = [(await timed(scrape))[0] for _ in range(3)]
        assert statistics.median(scrape_times) < 0.5, scrape_times

        # A request made while a scrape is being rendered is not held up by it.
        baseline = [(await timed(request))[0] for _ in range(5)]
        scraping = asyncio.ensure_future(scrape())
        await asyncio.sleep(0.002)
        during, status = await timed(request)
        await scraping
        assert status == 200
        assert during < max(0.25, 5 * statistics.median(baseline)), (during, baseline)


class SlowCollector(Collector):
    """Stands in for a registry that takes a second to render."""

    def collect(self) -> Iterable[Metric]:
        time.sleep(1.0)
        yield GaugeMetricFamily("slow_render", "A slow render.", value=1)


async def test_rendering_never_runs_on_the_request_loop(
    fake: FakeAnthropic, tmp_path: Path
) -> None:
    """The gateway on a loop of its own (as in `sluice serve`), so the client's clock is not
    stopped by what blocks the gateway's loop."""
    gw = GatewayServer(make_config(tmp_path / "sluice.db", fake.url))
    with ServerThread(gw.start, gw.stop) as thread:
        state = gw.app.services
        assert state.engine is not None and state.metrics_server is not None
        metrics_url = state.metrics_server.url
        admin = KeyAdmin(KeysRepo(state.engine), SECRET.encode(), SystemClock())
        key = thread.call(admin.create, name="k").secret
        state.metrics.registry.register(SlowCollector())
        async with aiohttp.ClientSession() as s:

            async def scrape() -> str:
                async with s.get(metrics_url) as r:  # type: ignore[arg-type]
                    return await r.text()

            async def request() -> int:
                async with s.post(
                    f"{gw.url}/v1/messages", data=body(KNOWN), headers={"x-api-key": key}
                ) as r:
                    await r.read()
                    return r.status

            assert await request() == 200
            scraping = asyncio.ensure_future(scrape())
            await asyncio.sleep(0.2)  # the render has begun
            during, status = await timed(request)
            assert "slow_render 1.0" in await scraping
    assert status == 200
    assert during < 0.5, during
