"""Script calls issued in the same event-loop turn go to Redis in one round trip.

After a response the handler starts the budget settle and the rate-limit release together;
under load, many requests' settles land in one turn. Each would cost redis-py a pooled
connection, a write and a read (~110-160 µs of CPU each, bench/redis_roundtrips.py); a
non-transactional pipeline sends them in one write. Every script still runs atomically and
in the order queued, so nothing about what is counted changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Queued = tuple[AsyncScript, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._queued: list[Queued] = []
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply, or its error (a connection error fails the whole batch)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((script, keys, args, future))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(queued))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _send(self, queued: list[Queued]) -> None:
        try:
            if len(queued) == 1:  # nothing to batch: the plain call is cheaper than a pipeline
                script, keys, args, future = queued[0]
                _resolve(future, await script(keys=keys, args=args))
                return
            replies = await self._pipeline(queued)
        except BaseException as exc:  # every caller sees the failure (or the cancellation)
            for *_, future in queued:
                _fail(future, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (script, keys, args, future), reply in zip(queued, replies, strict=True):
            if isinstance(reply, NoScriptError):  # Redis restarted: the plain call loads it
                await self._retry(script, keys, args, future)
            elif isinstance(reply, Exception):
                _fail(future, reply)
            else:
                _resolve(future, reply)

    async def _pipeline(self, queued: list[Queued]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for script, keys, args, _ in queued:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    @staticmethod
    async def _retry(
        script: AsyncScript, keys: Sequence[Any], args: Sequence[Any], future: asyncio.Future[Any]
    ) -> None:
        try:
            _resolve(future, await script(keys=keys, args=args))
        except Exception as exc:
            _fail(future, exc)


def _resolve(future: asyncio.Future[Any], reply: Any) -> None:
    if not future.done():  # its caller may have been cancelled meanwhile
        future.set_result(reply)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
