"""The ledger's local journal: how a response is acknowledged durably without waiting for a
database commit (SQLite only; see ``ledger.journal``).

Each settled row is appended to a segment file before the response's last byte, with one
``write(2)`` of about half a kilobyte to the page cache (a few microseconds, no thread hop,
no fsync). That is exactly as durable as the SQLite database beside it in WAL mode with
``synchronous=NORMAL``: it survives a killed process, not a power cut. The batch writer then
commits the rows as before; each flush starts a new segment, and a segment is deleted once
every row in it is committed. At start-up, segments that no live process holds (each
process holds its own under ``flock``) are read back and their rows inserted, idempotently
by request id, so a kill -9 loses no acknowledged row.

A frame is a 4-byte big-endian length and the row's values as msgpack (``LEDGER_COLUMNS``
order). A torn last frame (the process died mid-write) is dropped: its response never ended.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import msgspec

from sluice.base.clock import new_request_id
from sluice.base.settlement import LEDGER_COLUMNS, Settlement

log = logging.getLogger("sluice.ledger")

_SUFFIX = ".journal"
_MAX_FRAME = 1 << 20  # a row is well under this; a larger length is a torn or foreign file
_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE = msgspec.msgpack.Decoder(list[object]).decode


class LedgerJournal:
    """This process's journal segments in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd = -1
        self._path: Path | None = None

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._next_segment()

    def append(self, settlement: Settlement) -> None:
        payload = _ENCODE(settlement.ledger_values())
        os.write(self._fd, len(payload).to_bytes(4, "big") + payload)

    def rotate(self) -> Segment:
        """Start a new segment; the old one holds exactly the rows recorded so far. It stays
        open (locked: no other process recovers it) until ``release``d."""
        assert self._path is not None, "the journal is not open"
        old = Segment(self._path, self._fd)
        self._next_segment()
        return old

    def close(self, *, delete: bool) -> None:
        """At a clean stop; ``delete`` the live segment when its rows are all committed."""
        if self._fd >= 0:
            if delete and self._path is not None:
                self._path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1

    def _next_segment(self) -> None:
        # The request-id generator gives a sortable, unique name without a counter to keep.
        path = self.directory / f"ledger-{os.getpid()}-{new_request_id()}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd, self._path = fd, path


class Segment(NamedTuple):
    path: Path
    fd: int  # -1: not held by this process (an orphan being recovered holds its own)


def release(segments: list[Segment]) -> None:
    """Every row in these segments is committed: delete them."""
    for segment in segments:
        segment.path.unlink(missing_ok=True)  # or another process recovered it first
        if segment.fd >= 0:
            os.close(segment.fd)


@contextmanager
def orphans(directory: Path) -> Iterator[list[tuple[Path, list[Settlement]]]]:
    """Segments no live process holds, with their rows; held (locked) while in use so that two
    starting processes never both recover one. The caller deletes them (``release``, with
    ``fd=-1``) once inserted."""
    held: list[tuple[int, Path, list[Settlement]]] = []
    try:
        for path in sorted(directory.glob(f"*{_SUFFIX}")) if directory.is_dir() else []:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process's segment
                continue
            held.append((fd, path, _rows(path)))
        yield [(path, rows) for _, path, rows in held]
    finally:
        for fd, _, _ in held:
            os.close(fd)


def _rows(path: Path) -> list[Settlement]:
    data = path.read_bytes()
    rows: list[Settlement] = []
    at = 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        if size > _MAX_FRAME or at + 4 + size > len(data):
            log.warning("ledger journal %s: a torn last frame at byte %d was dropped", path, at)
            break
        try:
            values = _DECODE(data[at + 4 : at + 4 + size])
            rows.append(Settlement(**dict(zip(LEDGER_COLUMNS, values, strict=True))))  # type: ignore[arg-type]
        except (msgspec.DecodeError, TypeError, ValueError):
            log.warning("ledger journal %s: an unreadable frame at byte %d was skipped", path, at)
        at += 4 + size
    return rows
