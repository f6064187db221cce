"""Watching the client once its body is read: when it goes away, the handler's task is
cancelled at once, so an upstream that is still working (or hanging) is cancelled too.

Under Sluice's own HTTP protocol (``server/http_protocol.py``) the server fires a per-request
signal from ``connection_lost``: no task. Under any other ASGI server, a task waits on
``receive`` for the ``http.disconnect`` message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sluice.base.asgi import DISCONNECT_EXTENSION, DisconnectSignal, Receive, Scope


class DisconnectWatch:
    __slots__ = ("finished", "gone", "receive", "signal", "task", "watcher")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        extensions = scope.get("extensions")
        signal = extensions.get(DISCONNECT_EXTENSION) if extensions else None
        self.signal: DisconnectSignal | None = signal
        self.receive = receive
        self.finished = False
        self.gone: Callable[[], None] | None = None
        self.task: asyncio.Task[object] | None = None
        self.watcher: asyncio.Task[None] | None = None

    def start(self, gone: Callable[[], None]) -> None:
        """Call ``gone`` and cancel the current task when the client goes away."""
        task = asyncio.current_task()
        assert task is not None
        self.task, self.gone = task, gone
        if self.signal is not None:
            self.signal.on(self._lost)
        else:
            self.watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            self._lost()

    def _lost(self) -> None:
        if self.finished or self.gone is None or self.task is None:
            return
        self.gone()
        self.task.cancel("client disconnected")

    def stop(self) -> None:
        self.finished = True
        # ``gone`` is a bound method of the request's context, which holds this watch: cut
        # the cycle (and the task link) so the request is freed at once, not by the collector.
        self.gone = self.task = None
        if self.signal is not None:
            self.signal.off()
        if self.watcher is not None:
            self.watcher.cancel()
