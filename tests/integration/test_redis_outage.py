"""A real Redis stopped under load: every Redis-backed feature takes its configured outcome
(503 ``<feature>_unavailable`` or open), never a 500; /readyz names what is degraded; all of
it recovers when Redis comes back on the same port, without a restart of Sluice.

The test runs its own redis-server on a free port (the shared one is never stopped)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from test_budgets import BODY, add_budget

from sluice.config.vk import VirtualKeyConfig
from sluice.testing import FakeAnthropic

from support import Gateway, start_gateway

STREAM_BODY = BODY[:-1] + b',"stream":true}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class PrivateRedis:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, *args],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(200):
            if reachable(self.port):
                return
            assert self.proc.poll() is None, "private redis-server exited"
            time.sleep(0.025)
        raise AssertionError("private redis-server did not come up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # an outage, not a shutdown
            self.proc.wait()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis(free_port())
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@dataclass
class Keys:
    limited: str  # rate limits
    guarded: str  # a tool policy: non-streaming requests look up remembered verdicts
    budgeted: str  # a blocking budget on its principal


async def setup(
    tmp_path: Path, fake: FakeAnthropic, redis: PrivateRedis, outage: str
) -> tuple[Gateway, Keys]:
    extra = f"redis: {redis.url}\n{outage}"
    gw = await start_gateway(tmp_path / "o.db", fake.url, extra, refresh_s=0.2)
    limited = await gw.mint(config=VirtualKeyConfig.parse({"rate_limits": {"rpm": 100_000}}))
    guarded = await gw.mint(
        config=VirtualKeyConfig.parse({"policy_rules": {"tools": {"deny": ["^Bash$"]}}})
    )
    budgeted = await gw.mint(name="carol", principal="carol")
    await add_budget(
        gw,
        0,
        scope="principal",
        target="carol",
        window="month",
        limit_micros=10**9,
        on_breach="block",
    )
    return gw, Keys(limited.secret, guarded.secret, budgeted.secret)


@dataclass
class Load:
    """Requests on every key in a loop; (phase, key name, status, error type) of each."""

    gw: Gateway
    keys: Keys
    phase: str = "before"
    seen: list[tuple[str, str, int, str]] = field(default_factory=list)
    _stop: bool = False

    async def _loop(self, s: aiohttp.ClientSession, name: str, key: str, body: bytes) -> None:
        while not self._stop:
            phase = self.phase
            async with s.post(
                f"{self.gw.url}/v1/messages", data=body, headers={"x-api-key": key}
            ) as r:
                raw = await r.read()
                kind = orjson.loads(raw)["error"]["type"] if r.status != 200 else ""
                if phase == self.phase:  # the phase did not change under this request
                    self.seen.append((phase, name, r.status, kind))

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as s:
            loops = [
                ("limited", self.keys.limited, BODY),
                ("guarded", self.keys.guarded, BODY),
                ("guarded-stream", self.keys.guarded, STREAM_BODY),
                ("budgeted", self.keys.budgeted, BODY),
            ]
            await asyncio.gather(*[self._loop(s, *args) for args in loops * 3])

    def stop(self) -> None:
        self._stop = True

    def outcomes(self, phase: str) -> dict[str, set[tuple[int, str]]]:
        out: dict[str, set[tuple[int, str]]] = {}
        for p, name, status, kind in self.seen:
            if p == phase:
                out.setdefault(name, set()).add((status, kind))
        return out

    def count(self, phase: str) -> Counter[str]:
        return Counter(name for p, name, _, _ in self.seen if p == phase)


async def readyz(gw: Gateway) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/readyz") as r:
        return r.status, await r.json()


async def until(check: Any, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def outage_under_load(
    gw: Gateway, keys: Keys, redis: PrivateRedis
) -> tuple[Load, dict[str, Any]]:
    """Load before, during and after an outage; /readyz as seen during it."""
    load = Load(gw, keys)
    task = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(1.0)
        load.phase = "switching"
        redis.stop()
        await asyncio.sleep(0.5)
        load.phase = "down"
        await asyncio.sleep(2.0)
        during_status, during = await readyz(gw)
        load.phase = "switching-back"
        redis.start()

        async def ready() -> bool:
            status, body = await readyz(gw)
            return status == 200 and body["status"] == "ok"

        await until(ready)
        # Each feature is past its first call on a fresh connection before counting.
        await asyncio.sleep(1.0)
        load.phase = "after"
        await asyncio.sleep(1.5)
    finally:
        load.stop()
        await task
    assert all(status != 500 for _, _, status, _ in load.seen), Counter(load.seen)
    # Degraded, not unready: every replica shares this Redis, and the configured outcomes
    # are the answer to its outage (taking all replicas out of rotation is not).
    assert during_status == 200, during
    assert during["status"] == "degraded" and during["redis"] is False
    for phase in ("before", "down", "after"):
        assert set(load.count(phase)) == {"limited", "guarded", "guarded-stream", "budgeted"}
    return load, during


async def test_defaults_budgets_closed_the_rest_open_and_recovery(
    tmp_path: Path, fake: FakeAnthropic, private_redis: PrivateRedis
) -> None:
    gw, keys = await setup(tmp_path, fake, private_redis, "")
    try:
        load, during = await outage_under_load(gw, keys, private_redis)
        everything_ok = {
            n: {(200, "")} for n in ("limited", "guarded", "guarded-stream", "budgeted")
        }
        assert load.outcomes("before") == everything_ok
        assert load.outcomes("down") == {
            "limited": {(200, "")},  # rate limits: open
            "guarded": {(200, "")},  # verdicts: open (judged afresh)
            "guarded-stream": {(200, "")},
            "budgeted": {(503, "budget_unavailable")},  # budgets: closed
        }
        assert load.outcomes("after") == everything_ok
        assert during["degraded"] == {
            "budgets": "closed",
            "rate_limits": "open",
            "verdicts": "open",
            "webhook_dedupe": "open",
        }
        status, after = await readyz(gw)
        assert (status, after["status"], after["redis"], after["degraded"]) == (200, "ok", True, {})
    finally:
        await gw.server.stop()


async def test_configured_outcomes_rate_limits_and_verdicts_closed_budgets_open(
    tmp_path: Path, fake: FakeAnthropic, private_redis: PrivateRedis
) -> None:
    outage = "redis_outage: {budgets: open, rate_limits: closed, verdicts: closed}\n"
    gw, keys = await setup(tmp_path, fake, private_redis, outage)
    try:
        load, during = await outage_under_load(gw, keys, private_redis)
        assert load.outcomes("down") == {
            "limited": {(503, "rate_limit_unavailable")},
            "guarded": {(503, "verdict_unavailable")},
            "guarded-stream": {(200, "")},  # streams look up no verdict
            "budgeted": {(200, "")},  # budgets: open
        }
        assert all(s == {(200, "")} for s in load.outcomes("after").values())
        assert during["degraded"]["rate_limits"] == "closed"
        assert during["degraded"]["budgets"] == "open"
    finally:
        await gw.server.stop()


async def test_a_settlement_that_meets_a_hung_redis_is_retried_and_charged_once(
    tmp_path: Path, fake: FakeAnthropic, private_redis: PrivateRedis
) -> None:
    """Redis hangs (SIGSTOP) while a stream runs: the settle times out, is kept, and is
    applied once when Redis answers again (its data intact), never twice."""
    import signal

    from test_budgets import CALL_MICROS

    from sluice.governance.windows import window_bounds
    from sluice.testing import Fault, Reply, Scenario, TextBlock

    gw, keys = await setup(tmp_path, fake, private_redis, "")
    assert private_redis.proc is not None
    try:
        gate = gw.server.app.services.budgets
        fake.set_default(Scenario(Reply([TextBlock("a b c d", chunks=4)]), Fault(event_delay=0.2)))
        async with aiohttp.ClientSession() as s:
            async with s.post(
                f"{gw.url}/v1/messages", data=STREAM_BODY, headers={"x-api-key": keys.budgeted}
            ) as r:
                assert r.status == 200
                private_redis.proc.send_signal(signal.SIGSTOP)  # hung, not gone
                assert b"message_stop" in await r.read()
            await asyncio.sleep(3.0)  # the settle's socket timeout (2 s) has passed
            private_redis.proc.send_signal(signal.SIGCONT)
        counter = ("B" * 26, window_bounds("month", int(time.time() * 1000))[0])  # add_budget's id
        await until(lambda: _settled_is(gate, counter, CALL_MICROS))
        await asyncio.sleep(1.0)  # more polls and retries: still charged once
        assert await gate.counters.settled_amount(counter) == CALL_MICROS
    finally:
        if private_redis.proc is not None:
            private_redis.proc.send_signal(signal.SIGCONT)
        await gw.server.stop()


async def _settled_is(gate: Any, counter: tuple[str, int], amount: int) -> bool:
    return bool(await gate.counters.settled_amount(counter) == amount)


@pytest.mark.parametrize(("setting", "sent"), [("open", True), ("closed", False)])
async def test_webhook_dedupe_outcome_when_redis_is_unreachable(
    tmp_path: Path, fake: FakeAnthropic, setting: str, sent: bool
) -> None:
    """The once-per-crossing claim cannot be made: open sends (maybe a repeat), closed skips."""
    dead = free_port()  # nothing listens here
    extra = f"redis: redis://127.0.0.1:{dead}/0\nredis_outage: {{webhook_dedupe: {setting}}}\n"
    gw = await start_gateway(tmp_path / "w.db", fake.url, extra)
    try:
        state = gw.server.app.services
        assert await state.budgets._claim("budget:window:breached") is sent
        assert state.degraded(False)["webhook_dedupe"] == setting
        status, ready = await readyz(gw)
        assert (status, ready["status"]) == (200, "degraded")
    finally:
        await gw.server.stop()
