"""The request path's Redis commands, from every request in flight, on one connection:
commands queued while a batch is out go together in the next one (auto-pipelining).

Through redis-py's client each call costs ~110-160 µs of CPU (pool checkout and return, the
command path, bench/redis_roundtrips.py), and a request makes four or five of them
(verdict check, rate-limit acquire, budget reserve, settle, release). Here a call is a queued
entry and one parsed reply; the write and the read are shared by the whole batch. Redis runs
the commands in the order sent, each script atomically, so nothing about what is counted
changes; replies come back in that order on the one connection, which pairs them with their
callers.

One timeout bounds a whole batch, connecting included (the pool's ``socket_timeout``); the
connection itself has none, so a reply costs no timer of its own. A timeout or a connection
error fails the batch and everything queued behind it (each waited for the same unresponsive
Redis), and the next batch connects afresh. A connection idle for a while is checked with a
PING first (the pool's clients get the same from redis-py's retries): Redis's ``timeout`` or
a proxy may have closed it, and that must not fail the next requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

Queued = tuple[tuple[Any, ...], "asyncio.Future[Any]"]
IDLE_CHECK_S = 5.0  # a connection unused this long is pinged before a batch is sent on it


class AutoPipeline:
    def __init__(self, pool: ConnectionPool, idle_check_s: float = IDLE_CHECK_S) -> None:
        # The pool's settings, but no per-read timeout: _send bounds the whole batch.
        self._settings = dict(pool.connection_kwargs, socket_timeout=None)
        self._connection_class = pool.connection_class
        self._timeout = float(pool.connection_kwargs.get("socket_timeout") or 2.0)
        self._conn: AbstractConnection | None = None
        self._idle_check_s = idle_check_s
        self._used_at = 0.0  # loop time of the last batch answered on ``_conn``
        self._queued: list[Queued] = []
        self._sender: asyncio.Task[None] | None = None
        self.batches = 0  # batches sent, and commands in them: how well calls are shared
        self.commands = 0

    async def execute(self, *args: Any) -> Any:
        """The command's reply (bytes, int or a list of them); an error reply or a connection
        error is raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((args, future))
        if self._sender is None:  # idle: the sender starts after this turn's other callers
            self._sender = loop.create_task(self._drain())
        return await future

    async def script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted or flushed its scripts: EVAL loads it again
            return await self.execute("EVAL", script.script, len(keys), *keys, *args)

    async def aclose(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        await self._drop()

    async def _drain(self) -> None:
        batch: list[Queued] = []
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                await self._send(batch)
                batch = []
        except BaseException as exc:  # cancelled at shutdown: nobody is left waiting forever
            _fail_all(batch + self._queued, exc)
            self._queued = []
            raise
        finally:
            self._sender = None

    async def _send(self, batch: list[Queued]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            async with asyncio.timeout(self._timeout):
                conn = await self._connection()
                # hiredis packs in C what redis-py's packer encodes argument by argument.
                packed = [hiredis.pack_command(args) for args, _ in batch]
                await conn.send_packed_command(packed, check_health=False)
                for _, future in batch:
                    try:
                        reply = await conn.read_response()
                    except ResponseError as exc:  # this command's error reply; the rest follow
                        reply = exc
                    _resolve(future, reply)
            self._used_at = asyncio.get_running_loop().time()
        except Exception as exc:
            await self._drop()
            queued, self._queued = self._queued, []
            _fail_all(batch + queued, exc)

    async def _connection(self) -> AbstractConnection:
        conn = self._conn
        idle = asyncio.get_running_loop().time() - self._used_at
        if conn is not None and idle > self._idle_check_s:
            try:
                await conn.send_command("PING", check_health=False)
                await conn.read_response()
            except (RedisError, OSError):  # closed while idle: a fresh connection instead
                await self._drop()
                conn = None
        if conn is None:
            conn = self._connection_class(**self._settings)
            await conn.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            self._conn = conn
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect(nowait=True)


def _resolve(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():  # its caller was cancelled meanwhile
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)


def _fail_all(queued: list[Queued], exc: BaseException) -> None:
    for _, future in queued:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
