"""Timers for events that almost never fire: a request's header timeout, a fallback attempt's
timeout, a budget reservation's renewal. Each would otherwise cost a loop timer per request
(``asyncio.timeout`` is ~3 µs of Python a request, ``call_later`` and its cancel ~1 µs), yet
the request nearly always ends first.

``LazyTimers`` keeps the pending ones in a dict and one loop timer for the nearest of them.
Adding a later one (the usual case: every request uses the same delay) arms nothing; when
the loop timer fires, it runs what is due and re-arms for the nearest left, so under load it
fires about once per delay, not once per request. Callbacks run exactly as ``call_at``'s do:
on the loop, not before they are due.

``LazyTimers.timeout(seconds)`` is a ``with`` block (not ``async with``) with
``asyncio.timeout``'s semantics: on expiry the task is cancelled, and the block turns that
cancellation, and only that one, into ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from types import TracebackType


class LazyTimer:
    __slots__ = ("_callback", "_owner", "due")

    def __init__(self, owner: LazyTimers, due: float, callback: Callable[[], object]) -> None:
        self._owner = owner
        self.due = due
        self._callback = callback

    def cancel(self) -> None:
        self._owner._pending.pop(self, None)


class LazyTimers:
    __slots__ = ("_armed", "_armed_due", "_loop", "_pending")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[LazyTimer, None] = {}  # an insertion-ordered set
        self._armed: asyncio.TimerHandle | None = None
        self._armed_due = math.inf

    def call_later(self, delay: float, callback: Callable[[], object]) -> LazyTimer:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a new loop (whatever the old one held died)
            self._loop, self._pending, self._armed, self._armed_due = loop, {}, None, math.inf
        timer = LazyTimer(self, loop.time() + delay, callback)
        self._pending[timer] = None
        if timer.due < self._armed_due:
            self._arm(timer.due)
        return timer

    def timeout(self, seconds: float) -> Deadline:
        return Deadline(self, seconds)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _arm(self, due: float) -> None:
        assert self._loop is not None
        if self._armed is not None:
            self._armed.cancel()
        self._armed = self._loop.call_at(due, self._fire)
        self._armed_due = due

    def _fire(self) -> None:
        self._armed, self._armed_due = None, math.inf
        assert self._loop is not None
        now = self._loop.time()
        due_now = [t for t in self._pending if t.due <= now]
        for timer in due_now:
            del self._pending[timer]
        nearest = min((t.due for t in self._pending), default=math.inf)
        if nearest < math.inf:
            self._arm(nearest)
        for timer in due_now:
            timer._callback()


class Deadline:
    """One ``with`` block under a timeout (see the module docstring)."""

    __slots__ = ("_cancelling", "_expired", "_owner", "_seconds", "_task", "_timer")

    def __init__(self, owner: LazyTimers, seconds: float) -> None:
        self._owner = owner
        self._seconds = seconds
        self._expired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("LazyTimers.timeout() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._timer = self._owner.call_later(self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        task = self._task
        # The timer's callback is our bound method, and the task holds us: drop both links,
        # so this block's objects are freed here rather than by the cycle collector.
        del self._timer, self._task
        # As asyncio.timeout: our cancel is turned into TimeoutError unless another cancel
        # was requested meanwhile (then the task really is being cancelled).
        if (
            self._expired
            and task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
