"""Watching the client once its body is read: when it goes away, the handler's task is
cancelled at once, so an upstream that is still working (or hanging) is cancelled too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sluice.base.asgi import Receive


class DisconnectWatch:
    __slots__ = ("finished", "gone", "task", "watcher")

    def __init__(self, receive: Receive, gone: Callable[[], None]) -> None:
        self.finished = False
        self.gone = gone
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.watcher = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        message = await receive()
        if message["type"] == "http.disconnect" and not self.finished:
            self.gone()
            self.task.cancel("client disconnected")

    def stop(self) -> None:
        self.finished = True
        self.watcher.cancel()
