"""Real PostgreSQL for tests: reachable, or started the way this machine starts it."""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import time


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
