"""The auto-pipeline under the Redis stores, against a real Redis: calls made together share a
batch, every caller gets its own reply (errors included), a caller that leaves costs the
others nothing, and a Redis that stops answering fails the waiting calls within the timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from sluice.backends.redis_pipe import AutoPipeline
from sluice.backends.redis_store import connect

from services import ensure_redis, silent_server

REDIS_URL = "redis://127.0.0.1:6379/6"  # a database of its own, flushed per test


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    ensure_redis()
    redis = connect(REDIS_URL)
    await redis.flushdb()
    try:
        yield redis
    finally:
        await redis.flushdb()
        await redis.aclose(close_connection_pool=True)


async def test_calls_made_together_share_a_batch_and_get_their_own_replies(client: Redis) -> None:
    pipe = AutoPipeline(client.connection_pool)
    try:
        replies = await asyncio.gather(*[pipe.execute("INCRBY", "n", i) for i in range(1, 101)])
        assert replies == [i * (i + 1) // 2 for i in range(1, 101)]  # in order, each its own
        assert pipe.commands == 100 and pipe.batches <= 2, pipe.batches
        await pipe.execute("SET", "word", "x")
        results = await asyncio.gather(
            pipe.execute("INCR", "n"),
            pipe.execute("INCR", "word"),  # an error reply: only this caller sees it
            pipe.execute("GET", "word"),
            return_exceptions=True,
        )
        assert results[0] == 5051 and results[2] == b"x"
        assert isinstance(results[1], ResponseError)
    finally:
        await pipe.aclose()


async def test_a_caller_that_leaves_costs_the_others_nothing(client: Redis) -> None:
    pipe = AutoPipeline(client.connection_pool)
    try:
        calls = [asyncio.ensure_future(pipe.execute("INCR", "n")) for _ in range(10)]
        await asyncio.sleep(0)
        calls[3].cancel()
        done = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(done[3], asyncio.CancelledError)
        assert sorted(r for r in done if isinstance(r, int)) == [1, 2, 3, 5, 6, 7, 8, 9, 10]
        assert await pipe.execute("GET", "n") == b"10"  # the command itself still ran
    finally:
        await pipe.aclose()


async def test_a_connection_closed_while_idle_is_replaced_before_the_next_batch(
    client: Redis,
) -> None:
    """Redis's ``timeout``, a restart of a proxy in between: the server closed the pipeline's
    idle connection. The next call still gets its reply (a PING finds the connection dead)."""
    pipe = AutoPipeline(client.connection_pool, idle_check_s=0.05)
    try:
        await pipe.execute("SET", "k", "1")
        mine = await client.client_id()
        for line in await client.client_list():
            if int(line["id"]) != mine and line["db"] == "6":
                await client.client_kill_filter(_id=line["id"])
        await asyncio.sleep(0.1)
        assert await pipe.execute("GET", "k") == b"1"
        assert await pipe.execute("GET", "k") == b"1"  # and the new connection is kept
    finally:
        await pipe.aclose()


async def test_a_redis_that_stops_answering_fails_the_batch_within_the_timeout() -> None:
    """A server that accepts and never replies: every waiting call fails after the pool's
    socket timeout (as a connection-level error), and the next batch connects afresh."""
    async with silent_server() as hung:
        client = Redis.from_url(f"redis://127.0.0.1:{hung.port}/0", socket_timeout=0.3)
        pipe = AutoPipeline(client.connection_pool)
        try:
            for attempt in (1, 2):
                started = asyncio.get_running_loop().time()
                results = await asyncio.gather(
                    *[pipe.execute("GET", f"k{n}") for n in range(5)], return_exceptions=True
                )
                assert all(isinstance(r, OSError) for r in results), results  # TimeoutError
                assert asyncio.get_running_loop().time() - started < 2.0
                assert len(hung.accepted) == attempt
        finally:
            await pipe.aclose()
            await client.aclose(close_connection_pool=True)
