"""Real PostgreSQL and Redis for tests: reachable, or started the way this machine starts
them."""

from __future__ import annotations

import asyncio
import glob
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.backends.factory import Backend, memory_backend, redis_backend
from sluice.base.clock import Clock, SystemClock
from sluice.store.db import create_engine, migrate

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_postgres(host: str = "127.0.0.1", port: int = 5432) -> None:
    """Start the local cluster if it is down (pg_ctlcluster, as the machine notes say)."""
    if _reachable(host, port):
        return
    versions = sorted(glob.glob("/etc/postgresql/*"))
    if not versions or shutil.which("pg_ctlcluster") is None:
        raise RuntimeError("PostgreSQL is not reachable on 127.0.0.1:5432 and cannot be started")
    version = versions[-1].rsplit("/", 1)[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False
    )
    for _ in range(100):
        if _reachable(host, port):
            return
        time.sleep(0.1)
    raise RuntimeError("PostgreSQL did not come up on 127.0.0.1:5432")


def ensure_redis(host: str = "127.0.0.1", port: int = 6379) -> None:
    """Start a local Redis if it is down (the machine's own start command)."""
    if _reachable(host, port):
        return
    if shutil.which("redis-server") is None:
        raise RuntimeError("Redis is not reachable on 127.0.0.1:6379 and cannot be started")
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=False,
    )
    for _ in range(100):
        if _reachable(host, port):
            return
        time.sleep(0.1)
    raise RuntimeError("Redis did not come up on 127.0.0.1:6379")


@asynccontextmanager
async def migrated_engine(kind: str, sqlite_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on SQLite (``sqlite_path``) or on a fresh PostgreSQL database that is
    dropped afterwards: the two backends every store contract suite runs against."""
    if kind == "sqlite":
        eng = create_engine(f"sqlite:///{sqlite_path}")
        await migrate(eng)
        try:
            yield eng
        finally:
            await eng.dispose()
        return
    ensure_postgres()
    name = f"sluice_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    eng = create_engine(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        await migrate(eng)
        yield eng
    finally:
        await eng.dispose()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def backend_of(kind: str, url: str, clock: Clock | None = None) -> AsyncIterator[Backend]:
    """The backend every storage contract suite runs against: in-process, or a real Redis
    (started if down) on a database of its own, flushed before and after."""
    if kind == "memory":
        yield memory_backend(clock or SystemClock())
        return
    ensure_redis()
    backend = redis_backend(url)
    client = Redis.from_url(url)
    await client.flushdb()
    try:
        yield backend
    finally:
        await client.flushdb()
        await client.aclose()
        await backend.close()


@dataclass
class SilentServer:
    """A TCP server that accepts connections and never answers: a hung database or Redis."""

    port: int = 0
    accepted: list[asyncio.StreamWriter] = field(default_factory=list)


@asynccontextmanager
async def silent_server() -> AsyncIterator[SilentServer]:
    silent = SilentServer()

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.accepted.append(writer)  # and never a byte back

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    silent.port = server.sockets[0].getsockname()[1]
    try:
        yield silent
    finally:
        for writer in silent.accepted:
            writer.close()
        server.close()
        await server.wait_closed()
