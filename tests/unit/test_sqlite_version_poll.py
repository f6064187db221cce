"""The SQLite config-version poll reads through its thread only when the database or its WAL
changed (or a second passed), and never misses a committed change."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sluice.governance.config_sync import _SqliteVersion


def _db(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE config_version (id INTEGER PRIMARY KEY, version INTEGER)")
    conn.execute("INSERT INTO config_version VALUES (1, 1)")
    conn.close()


def _bump(path: Path, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE config_version SET version = ? WHERE id = 1", (version,))
    conn.close()


async def test_unchanged_files_are_not_read_again_and_a_change_always_is(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _db(path)
    poll = _SqliteVersion(str(path))
    hops = 0
    real = poll._read

    def counted() -> int:
        nonlocal hops
        hops += 1
        return real()

    poll._read = counted  # type: ignore[method-assign]
    try:
        assert await poll.read() == 1
        assert await poll.read() == 1  # (opening the reader may create the WAL: a change)
        settled = hops
        for _ in range(20):
            assert await poll.read() == 1
        assert hops == settled <= 2  # nothing changed: no thread hop
        for version in range(2, 12):  # back-to-back commits, each seen by the next read
            _bump(path, version)
            assert await poll.read() == version
        poll._read_at -= 2.0  # a second later, it reads even an unchanged file
        before = hops
        assert await poll.read() == 11 and hops == before + 1
    finally:
        await poll.close()
