"""The ledger's local journal: how a response is acknowledged durably without waiting for a
database commit (SQLite only; see ``ledger.journal``).

Each settled row is copied into a segment file before the response's last byte. A segment is
preallocated (``posix_fallocate``: on ext4 and xfs no ``ENOSPC`` later, so no ``SIGBUS``; on
copy-on-write filesystems such as btrfs or ZFS a store into a full disk can still fail, so
there set ``ledger: {journal: false}``) and mapped shared,
so an append is a memory copy into the page cache: no system call, no thread hop, no fsync.
A ``write(2)`` per row cost 15-25 µs under load here (the inode update of a growing file), 3-4 %
of a small request's CPU. The page cache keeps a killed process's stores, so this is exactly as
durable as the SQLite database beside it in WAL mode with ``synchronous=NORMAL``: it survives a
killed process, not a power cut. The batch writer then
commits the rows as before; each flush starts a new segment, and a segment is deleted once
every row in it is committed. At start-up, segments that no live process holds (each
process holds its own under ``flock``) are read back and their rows inserted, idempotently
by request id, so a kill -9 loses no acknowledged row.

A frame is a 4-byte big-endian length and the row's values as msgpack (``LEDGER_COLUMNS``
order). The length is stored after the payload, so a process killed mid-copy leaves a zero
length where its frame would start: the segment's end. A zero length ends a segment (the rest
of a preallocated file is zeros); a torn last frame (a file cut short) is dropped: its response
never ended. A sealed segment is truncated to its frames.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from sluice.base.clock import new_request_id
from sluice.base.settlement import LEDGER_COLUMNS, Settlement

log = logging.getLogger("sluice.ledger")

_SUFFIX = ".journal"
_MAX_FRAME = 1 << 20  # a row is well under this; a larger length is a torn or foreign file
# A segment's preallocated size: a flush's rows (at most a batch, ~100 KB) fit; more continue
# in a new segment.
SEGMENT_BYTES = 256 << 10
_SPARE = 2  # committed segments kept for reuse
_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE = msgspec.msgpack.Decoder(list[object]).decode


@dataclass(slots=True, eq=False)
class Segment:
    path: Path
    fd: int = -1  # -1: not held by this process (an orphan being recovered holds its own)
    mapped: mmap.mmap | None = None
    used: int = 0  # bytes of whole frames

    def unmap(self) -> None:
        """Cut the file to its frames (no zero tail on disk for a segment that is kept)."""
        if self.mapped is not None:
            self.mapped.close()
            self.mapped = None
            os.ftruncate(self.fd, self.used)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)  # or another process recovered it first
        if self.fd >= 0:
            if self.mapped is not None:
                self.mapped.close()
            os.close(self.fd)


class LedgerJournal:
    """This process's journal segments in ``directory``."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._live: Segment | None = None
        self._sealed: list[Segment] = []  # filled before the writer's next rotation
        # Committed segments, zeroed for reuse: in steady state two segments take turns and
        # a rotation makes no system call (creating and deleting a file per flush cost more
        # than the appends it saved).
        self._spare: list[Segment] = []

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._live = self._fresh(self._segment_bytes)

    def append(self, settlement: Settlement) -> None:
        payload = _ENCODE(settlement.ledger_values())
        live = self._live
        assert live is not None and live.mapped is not None, "the journal is not open"
        at, end = live.used, live.used + 4 + len(payload)
        if end > len(live.mapped):  # full: continue in a new segment
            fresh = self._fresh(max(self._segment_bytes, 4 + len(payload)))
            self._sealed.append(live)
            live = self._live = fresh
            at, end = 0, 4 + len(payload)
        view = live.mapped
        assert view is not None
        view[at + 4 : end] = payload
        view[at : at + 4] = len(payload).to_bytes(4, "big")  # last: the frame is now whole
        live.used = end

    def rotate(self) -> list[Segment]:
        """Start a new segment; the old ones hold exactly the rows appended so far. They stay
        open (locked: no other process recovers them) until ``release``d."""
        assert self._live is not None, "the journal is not open"
        if self._live.used == 0 and not self._sealed:
            return []  # no row since the last rotation (a failing database's retries)
        fresh = self._fresh(self._segment_bytes)  # first: a failure changes nothing
        sealed = [*self._sealed, self._live]
        self._sealed, self._live = [], fresh
        return sealed

    def release(self, segments: list[Segment]) -> None:
        """Every row in these segments is committed: zero them for reuse, or delete them."""
        for segment in segments:
            view = segment.mapped
            if view is None or len(view) != self._segment_bytes or len(self._spare) >= _SPARE:
                segment.discard()
                continue
            view[:4] = bytes(4)  # first: a reader now finds the segment empty
            view[4 : max(4, segment.used)] = bytes(max(4, segment.used) - 4)
            segment.used = 0
            self._spare.append(segment)

    def close(self, *, delete: bool) -> None:
        """At a clean stop; ``delete`` the live segment when its rows are all committed."""
        for spare in self._spare:
            spare.discard()
        self._spare = []
        for segment in [*self._sealed, self._live] if self._live is not None else []:
            if delete:
                segment.discard()
            else:
                segment.unmap()
                os.close(segment.fd)
        self._sealed, self._live = [], None

    def _fresh(self, size: int) -> Segment:
        if self._spare and size == self._segment_bytes:
            return self._spare.pop()
        # The request-id generator gives a sortable, unique name without a counter to keep.
        path = self.directory / f"ledger-{os.getpid()}-{new_request_id()}{_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:  # not on macOS: a sparse file (a full disk then fails on a store)
                os.ftruncate(fd, size)
            return Segment(path, fd, mmap.mmap(fd, size))
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise


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
        if size == 0:  # the unused rest of a preallocated segment
            break
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
