"""Run an async server (anything with async start/stop) on its own event loop in a thread.

For sync tests and the CLI::

    fake = FakeAnthropic()
    with ServerThread(fake.start, fake.stop):        # or ServerThread.for_fake(fake)
        ...                                          # fake.url is live here
        thread.call(fake.wait_cancelled, 1)          # run a coroutine on the server's loop

The loop is uvloop's when uvloop is importable, else asyncio's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

__all__ = ["ServerThread"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


class _AsyncServer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel leftovers and close the loop, so nothing leaks a ResourceWarning."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


class ServerThread:
    def __init__(
        self,
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
        *,
        name: str = "sluice-server",
    ) -> None:
        self._start_fn = start
        self._stop_fn = stop
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_fake(cls, server: _AsyncServer) -> ServerThread:
        """A ServerThread for any object with async start() and stop() (e.g. FakeAnthropic)."""
        return cls(server.start, server.stop)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("ServerThread is not running")
        return self._loop

    def start(self) -> None:
        """Start the loop thread and run `start()` there; re-raises its exception."""
        if self._thread is not None:
            raise RuntimeError("ServerThread already started")
        loop = _new_loop()
        thread = threading.Thread(target=self._run, args=(loop,), name=self._name, daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._call_start(), loop).result()
        except BaseException:
            self._shutdown_thread()
            raise

    def stop(self) -> None:
        """Run `stop()` on the loop, then stop the loop and join the thread."""
        if self._thread is None or self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._call_stop(), self._loop).result()
        finally:
            self._shutdown_thread()

    def call(
        self, coro_fn: Callable[_P, Coroutine[Any, Any, _T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """Run `coro_fn(*args)` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(*args, **kwargs), self.loop).result()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _call_start(self) -> None:
        await self._start_fn()

    async def _call_stop(self) -> None:
        await self._stop_fn()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            _close_loop(loop)

    def _shutdown_thread(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
