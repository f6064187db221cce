"""What one uvicorn response cycle writes through: its head goes out with its body's first
bytes, in one write.

uvicorn writes the status line and headers as soon as the app sends ``http.response.start``,
then the body when it comes: two ``send(2)`` calls and two TCP segments for every response,
though Sluice always has the body in hand when it starts one (a whole JSON response, or the
first SSE event). On loopback and in a VM each send costs several microseconds of the
gateway's CPU, so the head is held until the next write and both go out in one ``writev``.

Nothing waits on it: the head is also written on the event loop's next turn (a head whose
body is slow to come goes out then, as before), when the cycle completes (a HEAD response has
no body write), and before the connection closes. ``100 Continue`` is never held: the
client waits for it before it sends the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class HeadWriter:
    """Stands in for the transport in one ``RequestResponseCycle``."""

    __slots__ = ("_head_seen", "_loop", "done", "head", "transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        done: Callable[[], None],
    ) -> None:
        self.transport = transport
        self.head: bytes | None = None
        self.done = done  # the cycle's own completion callback
        self._loop = loop
        self._head_seen = False

    def write(self, data: bytes) -> None:
        head = self.head
        if head is not None:
            self.head = None
            self.transport.writelines((head, data))
        elif self._head_seen or data.startswith(b"HTTP/1.1 100 "):
            self.transport.write(data)  # the head already went, or an interim response
        else:
            self.head = data  # the cycle's first write is its head
            self._head_seen = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        head = self.head
        if head is not None:
            self.head = None
            if not self.transport.is_closing():  # the client left: nothing to write to
                self.transport.write(head)

    def completed(self) -> None:
        self.flush()
        self.done()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()
