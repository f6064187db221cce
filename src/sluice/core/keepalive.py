"""Keep-alive pings on a relayed stream.

Claude Code aborts a stream after 300 s without a byte. An upstream that is silent while it
thinks, and the translated lanes (Bedrock's event stream, OpenAI-compatible chunks) that send
no pings of their own, could reach that. So once a stream has started, Sluice sends Anthropic's
``event: ping`` when nothing has been relayed for ``server.keepalive_s`` (default 15 s).

The rule that keeps the relay byte-faithful: a ping goes out only between complete events. The
tap hands the relay whole events only (a partial one waits in its splitter), so whatever the
client has received ends at an event boundary whenever the relay is waiting on the upstream.
Nothing is sent before the first event is relayed: until then no response has started, and a
failure can still become an HTTP error or a fallback to another provider.

Cost: one timer per stream, re-armed only when it fires, and a task only for a ping itself.
"""

from __future__ import annotations

import asyncio

from sluice.base.asgi import Send

PING = b'event: ping\ndata: {"type": "ping"}\n\n'


class Keepalive:
    __slots__ = ("_handle", "_loop", "_send", "interval", "last", "pending")

    def __init__(self, send: Send, interval_s: float) -> None:
        self._send = send
        self._loop = asyncio.get_running_loop()
        self.interval = interval_s
        self.last = self._loop.time()
        self.pending: asyncio.Task[None] | None = None
        self._handle = self._loop.call_later(interval_s, self._check)

    def sent(self) -> None:
        """The relay sent something: the silence starts again."""
        self.last = self._loop.time()

    async def settle(self) -> None:
        """Before the relay sends: a ping being written finishes first (never interleaved)."""
        if self.pending is not None:
            await self.pending
            self.pending = None

    def _check(self) -> None:
        if self.pending is not None and self.pending.done():
            self.pending = None
        idle = self._loop.time() - self.last
        if idle >= self.interval and self.pending is None:
            self.pending = self._loop.create_task(self._ping())
            self.last = self._loop.time()
            idle = 0.0
        self._handle = self._loop.call_later(max(self.interval - idle, 0.001), self._check)

    async def _ping(self) -> None:
        try:
            await self._send({"type": "http.response.body", "body": PING, "more_body": True})
        except Exception:  # the client left: the relay's next send, or its watch, will see it
            return

    async def close(self) -> None:
        self._handle.cancel()
        await self.settle()
