"""The mid-stream idle timeout: an upstream that goes silent for ``idle_s`` between two reads
gets its stream failed, so the relay can end the client's stream with an error frame and
write the ledger row, instead of holding both connections open forever.

One timer per stream, not per chunk: each read only notes when it began (a float store); the
timer, when it fires, re-arms itself for the current read's deadline unless that deadline has
passed. Time the relay spends writing to a slow client is not silence: the watch is disarmed
between reads. On expiry it fails the aiohttp ``StreamReader`` with ``StreamIdle``, the way
aiohttp's own ``sock_read`` timeout does, so no task is cancelled. (``sock_read`` itself would
also bound the wait for response headers, which ``header_timeout_ms`` owns.)
"""

from __future__ import annotations

import asyncio

import aiohttp


class StreamIdle(Exception):
    """The upstream sent nothing for ``idle_s`` while a read was waiting."""


class IdleWatch:
    __slots__ = ("_handle", "_idle_s", "_loop", "_reader", "_since")

    def __init__(self, reader: aiohttp.StreamReader, idle_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = reader
        self._idle_s = idle_s
        self._since: float | None = None  # when the pending read began; None: not reading
        self._handle: asyncio.TimerHandle | None = None

    def reading(self) -> None:
        """A read is about to wait for the upstream."""
        self._since = now = self._loop.time()
        if self._handle is None:
            self._handle = self._loop.call_at(now + self._idle_s, self._check)

    def idle(self) -> None:
        """The read returned; what follows (writing to the client) is not upstream silence."""
        self._since = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None:  # between reads: the next read arms the timer again
            return
        due = since + self._idle_s
        if self._loop.time() >= due:
            self._reader.set_exception(StreamIdle())
        else:
            self._handle = self._loop.call_at(due, self._check)
