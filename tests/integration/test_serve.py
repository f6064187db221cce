"""`sluice serve` as a real process: the demo upstream, workers, and flush on shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from sluice.testing import FakeAnthropic

from services import ensure_redis

SLUICE = str(Path(sys.executable).parent / "sluice")
BODY = (
    b'{"model":"claude-opus-4-8","max_tokens":64,"stream":true,'
    b'"messages":[{"role":"user","content":"hi"}]}'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ANTHROPIC_API_KEY", "SLUICE_CONFIG", "SLUICE_SECRET_KEY")
    }
    env["NO_COLOR"] = "1"
    return env


async def cli(cwd: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        SLUICE,
        *args,
        cwd=cwd,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@asynccontextmanager
async def serving(cwd: Path, *args: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        SLUICE,
        "serve",
        "--port",
        str(port),
        *args,
        cwd=cwd,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.get(f"{url}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.returncode is None, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
        yield url, proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_demo_mode_serves_a_labelled_canned_reply(tmp_path: Path) -> None:
    """No config file and no provider key: the one-command start works, visibly as a demo."""
    async with serving(tmp_path) as (url, proc):
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/healthz") as r:
                assert (await r.json())["demo"] is True
            key = json.loads(await cli(tmp_path, "keys", "create", "--name", "me", "--json"))["key"]
            async with s.post(
                f"{url}/v1/messages?beta=true",
                data=BODY,
                headers={"authorization": f"Bearer {key}"},
            ) as r:
                assert r.status == 200
                body = await r.read()
            async with s.post(f"{url}/v1/messages", data=BODY, headers={"x-api-key": key}) as r:
                await r.read()
        text = "".join(
            json.loads(line[6:])["delta"]["text"]
            for line in body.decode().splitlines()
            if line.startswith("data: ") and '"text_delta"' in line
        )
        assert "DEMO upstream" in text and "not from a real model" in text
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
        stderr = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    assert "DEMO MODE" in stderr
    assert key not in stderr  # logs never carry the key
    rows = (
        sqlite3.connect(tmp_path / "sluice.db")
        .execute("select status, provider from ledger order by created_at")
        .fetchall()
    )
    assert rows == [(200, "demo"), (200, "demo")], stderr


async def test_two_workers_share_one_database_and_flush_on_shutdown(tmp_path: Path) -> None:
    ensure_redis()
    async with FakeAnthropic() as fake:
        config = tmp_path / "sluice.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path / 'w.db'}\nsecret_key: s3cret\n"
            "redis: redis://127.0.0.1:6379/11\n"  # several workers need shared counters
            # Batches far apart: rows can only reach the database through the shutdown flush.
            "ledger: {flush_interval_ms: 600000, batch_size: 10000, "
            "acknowledge_after_commit: false}\n"
            f"providers:\n  anthropic-primary: {{type: anthropic, api_key: sk-ant-w, "
            f"base_url: '{fake.url}', models: [claude-opus-4-8]}}\n"
        )
        key = json.loads(
            await cli(tmp_path, "keys", "create", "--name", "w", "--json", "--config", str(config))
        )["key"]
        async with serving(tmp_path, "--config", str(config), "--workers", "2") as (url, _):
            async with aiohttp.ClientSession() as s:
                statuses = []
                for _ in range(20):
                    async with s.post(
                        f"{url}/v1/messages", data=BODY, headers={"x-api-key": key}
                    ) as r:
                        statuses.append(r.status)
                        await r.read()
            assert statuses == [200] * 20
            before = sqlite3.connect(tmp_path / "w.db").execute("select count(*) from ledger")
            assert before.fetchone() == (0,)  # written off the response path, in batches
        assert len(fake.messages_requests()) == 20
        count = sqlite3.connect(tmp_path / "w.db").execute("select count(*) from ledger").fetchone()
        assert count == (20,)


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "commit"])
async def test_sigkill_on_sqlite_loses_no_acknowledged_row(tmp_path: Path, journal: bool) -> None:
    """Default ledger settings on SQLite (issue #11 item 9): a response received in full has
    its row in the ledger's journal, so a kill -9 right after loses none: the next start
    commits them. The batch timer is 10 minutes here: only the journal can have saved them.
    With ``journal: false`` each response waits for its row's commit instead."""
    async with FakeAnthropic() as fake:
        config = tmp_path / "sluice.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path / 'k.db'}\nsecret_key: s3cret\n"
            "ledger: {flush_interval_ms: 600000, batch_size: 10000, "
            f"journal: {str(journal).lower()}}}\n"
            f"providers:\n  anthropic-primary: {{type: anthropic, api_key: sk-ant-k, "
            f"base_url: '{fake.url}', models: [claude-opus-4-8]}}\n"
        )
        key = json.loads(
            await cli(tmp_path, "keys", "create", "--name", "k", "--json", "--config", str(config))
        )["key"]
        acknowledged = []
        async with serving(tmp_path, "--config", str(config)) as (url, proc):
            async with aiohttp.ClientSession() as s:

                async def one(stream: bool) -> None:
                    body = BODY if stream else BODY.replace(b'"stream":true', b'"stream":false')
                    async with s.post(
                        f"{url}/v1/messages", data=body, headers={"x-api-key": key}
                    ) as r:
                        await r.read()
                        assert r.status == 200
                        acknowledged.append(r.headers["request-id"])

                await asyncio.gather(*[one(i % 2 == 0) for i in range(30)])
            proc.kill()
            await proc.wait()
    segments = list((tmp_path / "k.db.ledger-journal").glob("*.journal"))
    if not journal:  # committed before each response ended
        rows = sqlite3.connect(tmp_path / "k.db").execute("select request_id from ledger")
        assert not segments and set(acknowledged) <= {r[0] for r in rows.fetchall()}
        return
    # Acknowledged, not yet committed (the batch timer is 10 minutes): in the journal.
    assert segments and sum(p.stat().st_size for p in segments) > 0
    # The next start inserts them before it serves, and deletes the dead process's segments.
    async with serving(tmp_path, "--config", str(config)):
        rows = sqlite3.connect(tmp_path / "k.db").execute("select request_id from ledger")
        committed = {r[0] for r in rows.fetchall()}
        assert not set(segments) & set((tmp_path / "k.db.ledger-journal").glob("*.journal"))
    assert len(acknowledged) == 30
    assert set(acknowledged) <= committed
