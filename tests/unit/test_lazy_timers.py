"""LazyTimers: one loop timer for many rarely-firing timers, and a ``with`` timeout with
``asyncio.timeout``'s semantics."""

from __future__ import annotations

import asyncio
import time

import pytest

from sluice.base.lazy_timers import LazyTimers


def _loop_timers(loop: asyncio.AbstractEventLoop) -> int:
    # asyncio's own loop (the tests' loop) keeps its timer heap here; read, never written.
    return len(loop._scheduled)  # type: ignore[attr-defined]


async def test_timers_fire_when_due_in_order_and_not_before() -> None:
    timers, loop = LazyTimers(), asyncio.get_running_loop()
    fired: list[tuple[str, float]] = []
    start = loop.time()
    timers.call_later(0.06, lambda: fired.append(("b", loop.time())))
    timers.call_later(0.02, lambda: fired.append(("a", loop.time())))
    timers.call_later(0.10, lambda: fired.append(("c", loop.time())))
    await asyncio.sleep(0.2)
    assert [name for name, _ in fired] == ["a", "b", "c"]
    for (_, at), delay in zip(fired, (0.02, 0.06, 0.10), strict=True):
        assert at - start >= delay - 0.002  # never early (a loop timer's slack at most)
        assert at - start < delay + 0.05
    assert timers.pending == 0


async def test_a_cancelled_timer_never_fires() -> None:
    timers = LazyTimers()
    fired: list[str] = []
    first = timers.call_later(0.02, lambda: fired.append("first"))
    timers.call_later(0.04, lambda: fired.append("second"))
    first.cancel()
    first.cancel()  # twice is harmless
    assert timers.pending == 1
    await asyncio.sleep(0.08)
    assert fired == ["second"]


async def test_later_timers_arm_no_loop_timer_of_their_own() -> None:
    timers, loop = LazyTimers(), asyncio.get_running_loop()
    before = _loop_timers(loop)
    handles = [timers.call_later(30, lambda: None) for _ in range(1000)]
    assert _loop_timers(loop) == before + 1  # one for all thousand
    # An earlier one re-arms (the old loop timer is cancelled, not left to fire).
    early = timers.call_later(5, lambda: None)
    assert timers.pending == 1001
    for handle in [*handles, early]:
        handle.cancel()
    assert timers.pending == 0


async def test_firing_rearms_for_the_nearest_left() -> None:
    timers = LazyTimers()
    fired: list[int] = []
    for i in range(50):
        timers.call_later(0.01 + i * 0.002, lambda i=i: fired.append(i))
    await asyncio.sleep(0.2)
    assert fired == list(range(50))


async def test_timeout_turns_its_own_expiry_into_timeout_error() -> None:
    timers, loop = LazyTimers(), asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError), timers.timeout(0.05):
        await asyncio.sleep(5)
    assert 0.045 <= loop.time() - start < 0.5
    assert timers.pending == 0
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # our cancel was taken back
    await asyncio.sleep(0)  # and nothing is left to cancel the task later


async def test_timeout_that_does_not_expire_changes_nothing() -> None:
    timers = LazyTimers()
    with timers.timeout(5):
        await asyncio.sleep(0.01)
        result = 42
    assert result == 42
    assert timers.pending == 0


async def test_an_outside_cancel_stays_a_cancel() -> None:
    timers = LazyTimers()
    inside = asyncio.Event()

    async def worker() -> None:
        with timers.timeout(5):
            inside.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(worker())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timers.pending == 0


async def test_an_outside_cancel_at_expiry_is_not_swallowed() -> None:
    timers = LazyTimers()
    inside = asyncio.Event()

    async def worker() -> None:
        with timers.timeout(0.02):
            inside.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(worker())
    await inside.wait()
    timers.call_later(0.021, task.cancel)  # someone else cancels just after the deadline
    time.sleep(0.05)  # block the loop: both are due when it next runs timers, in one batch
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelling() == 1  # the outside cancel stands; the deadline's is taken back


async def test_nested_timeouts_each_own_their_expiry() -> None:
    timers = LazyTimers()
    # The inner one expires: handled inside, the outer block carries on.
    with timers.timeout(1):
        with pytest.raises(TimeoutError), timers.timeout(0.02):
            await asyncio.sleep(5)
        await asyncio.sleep(0.01)
    # The outer one expires while the inner waits: the outer's TimeoutError, not the inner's.
    caught: list[str] = []
    try:
        with timers.timeout(0.02):
            try:
                with timers.timeout(5):
                    await asyncio.sleep(5)
            except TimeoutError:
                caught.append("inner")
                raise
    except TimeoutError:
        caught.append("outer")
    assert caught == ["outer"]


async def test_timeout_outside_a_task_is_refused() -> None:
    timers = LazyTimers()
    with timers.timeout(1):  # inside the test's task: fine
        pass

    def no_task() -> None:
        with timers.timeout(1):
            pass

    loop = asyncio.get_running_loop()
    future: asyncio.Future[BaseException] = loop.create_future()

    def run() -> None:
        try:
            no_task()
        except RuntimeError as exc:
            future.set_result(exc)

    loop.call_soon(run)
    assert "inside a task" in str(await future)


def test_a_new_event_loop_starts_afresh() -> None:
    timers = LazyTimers()
    fired: list[str] = []

    async def schedule(name: str, delay: float, wait: float) -> None:
        timers.call_later(delay, lambda: fired.append(name))
        await asyncio.sleep(wait)

    asyncio.run(schedule("first loop", 30, 0))  # the loop closes with the timer pending
    asyncio.run(schedule("second loop", 0.01, 0.05))
    assert fired == ["second loop"]
    assert timers.pending == 0
