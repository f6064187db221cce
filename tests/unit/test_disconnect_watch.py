"""The disconnect watch: a signal from Sluice's protocol, or a task on receive elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from ulid import ULID

from sluice.base.asgi import DISCONNECT_EXTENSION, DisconnectSignal
from sluice.base.clock import new_request_id
from sluice.core.disconnect import DisconnectWatch


async def _never() -> MutableMapping[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError


async def test_signal_cancels_the_handler_without_a_task() -> None:
    signal = DisconnectSignal()
    watch = DisconnectWatch({"extensions": {DISCONNECT_EXTENSION: signal}}, _never)
    gone: list[bool] = []

    async def handler() -> None:
        watch.start(lambda: gone.append(True))
        await asyncio.sleep(30)

    task = asyncio.get_running_loop().create_task(handler())
    await asyncio.sleep(0.01)
    assert watch.watcher is None  # no task per request under Sluice's protocol
    signal.fire()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and gone == [True]


async def test_stopped_watch_ignores_a_later_signal() -> None:
    signal = DisconnectSignal()
    watch = DisconnectWatch({"extensions": {DISCONNECT_EXTENSION: signal}}, _never)
    gone: list[bool] = []
    watch.start(lambda: gone.append(True))
    watch.stop()
    signal.fire()  # the response completed first: the connection closing later is not a cancel
    assert gone == []


async def test_other_servers_get_a_task_on_receive() -> None:
    disconnected = asyncio.Event()

    async def receive() -> MutableMapping[str, Any]:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    watch = DisconnectWatch({}, receive)
    gone: list[bool] = []

    async def handler() -> None:
        watch.start(lambda: gone.append(True))
        await asyncio.sleep(30)

    task = asyncio.get_running_loop().create_task(handler())
    await asyncio.sleep(0.01)
    assert watch.watcher is not None
    disconnected.set()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and gone == [True]


def test_request_ids_are_ulids_sorted_by_time() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    for rid in ids:
        assert rid.startswith("req_") and len(rid) == 30
        assert str(ULID.from_str(rid[4:])) == rid[4:]
    stamps = [ULID.from_str(rid[4:]).milliseconds for rid in ids]
    assert stamps == sorted(stamps)


def test_request_id_random_parts_use_the_whole_alphabet() -> None:
    """80 random bits in 16 characters: every Crockford character turns up, none other."""
    seen = {char for _ in range(500) for char in new_request_id()[14:]}
    assert seen == set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
