"""The part every fake upstream shares: a real aiohttp server's lifecycle, scripted
scenarios, the record of requests, and counting clients that went away."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import Self

from aiohttp import web

from sluice.testing.recorded import RecordedRequest
from sluice.testing.scenarios import Fault, Scenario


class FakeServer:
    def __init__(
        self,
        default: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_recorded: int | None = None,
    ) -> None:
        # Long-running uses (the demo upstream, `sluice mock`) bound what they keep.
        self._max_recorded = max_recorded
        self._default = default if default is not None else Scenario()
        self._host = host
        self._port = port
        self._queue: deque[Scenario] = deque()
        self._counter = 0
        self._runner: web.ServerRunner | None = None
        self._closing = asyncio.Event()
        self._cancel_event = asyncio.Event()
        self.requests: list[RecordedRequest] = []
        self.active_streams = 0
        self.cancelled_streams = 0

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raise NotImplementedError

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._closing = asyncio.Event()
        self._cancel_event = asyncio.Event()
        # handler_cancellation: a client that disconnects cancels its handler, which is how
        # cancelled_streams sees a gateway abandoning the upstream. aiohttp sets TCP_NODELAY on
        # every accepted connection (base_protocol.connection_made), so small SSE writes don't
        # stall on Nagle + delayed ACK.
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()  # releases hanging handlers, and their end is not a client cancel
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    # --- scripting and inspection ---------------------------------------------------------

    def script(self, *scenarios: Scenario) -> None:
        """Queue scenarios for the next model requests, one each, in order."""
        self._queue.extend(scenarios)

    def set_default(self, scenario: Scenario) -> None:
        self._default = scenario

    def clear(self) -> None:
        self.requests.clear()

    def _next_scenario(self) -> Scenario:
        return self._queue.popleft() if self._queue else self._default

    async def _before_headers(
        self, request: web.BaseRequest, fault: Fault
    ) -> web.StreamResponse | None:
        """The faults that come before any response byte: hang until the fake stops (then
        cut the connection), or a first-byte delay. A response means: send it, nothing else."""
        if fault.hang_before_headers:
            await self._closing.wait()
            return abort(request)
        if fault.first_byte_delay:
            await asyncio.sleep(fault.first_byte_delay)
        return None

    async def _write_stream(
        self,
        request: web.BaseRequest,
        headers: dict[str, str],
        parts: list[bytes],
        fault: Fault,
        error_part: bytes,
    ) -> web.StreamResponse:
        """Stream ``parts`` (events, frames, chunks), one write each, sent as soon as it is
        ready, then apply the fault's cut: a TCP drop (no chunked terminator), a hang until
        the fake stops, or ``error_part`` and a normal end."""
        resp = web.StreamResponse(status=200, headers=headers)
        resp.enable_chunked_encoding()
        cut, action = stop_point(fault, len(parts))
        delay = fault.event_delay
        try:
            await resp.prepare(request)  # StreamResponse sends the headers right away
            for i in range(cut):
                if delay and i:
                    await asyncio.sleep(delay)
                await resp.write(parts[i])
            if action == "hang":
                await self._closing.wait()
            if action in ("drop", "hang"):
                abort(request)
                return resp
            if action == "error":
                if delay:
                    await asyncio.sleep(delay)
                await resp.write(error_part)
            await resp.write_eof()
        except ConnectionResetError:  # the client went away while we were writing
            self._note_cancel()
        return resp

    async def _take(self, request: web.BaseRequest) -> tuple[int, str, bytes]:
        """Read and record a request: its number (1, 2, …: the fakes' ids use it), path and
        body. No client_max_size: real bodies exceed 1 MB."""
        body = await request.content.read()
        self._counter += 1
        path, _, query = request.raw_path.partition("?")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        self._record(RecordedRequest(request.method, path, query, headers, body))
        return self._counter, path, body

    def _record(self, request: RecordedRequest) -> None:
        self.requests.append(request)
        if self._max_recorded is not None and len(self.requests) > self._max_recorded:
            del self.requests[: len(self.requests) - self._max_recorded]

    async def wait_cancelled(self, n: int = 1, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Wait until `n` responses were abandoned by their client. Call on the server's loop."""
        try:
            async with asyncio.timeout(timeout):
                while self.cancelled_streams < n:
                    self._cancel_event.clear()
                    await self._cancel_event.wait()
        except TimeoutError:
            return False
        return True

    def _note_cancel(self) -> None:
        if not self._closing.is_set():
            self.cancelled_streams += 1
            self._cancel_event.set()


def abort(request: web.BaseRequest) -> web.StreamResponse:
    """Cut the TCP connection: the client sees a reset / an incomplete chunked body."""
    if request.transport is not None:
        request.transport.abort()
    # aiohttp's write_eof on the dead transport raises ConnectionError, which it swallows.
    return web.Response()


def stop_point(fault: Fault, n_events: int) -> tuple[int, str | None]:
    """How many events to send, and what happens after them (drop, error, hang or nothing)."""
    cut, action = n_events, None
    for name, after in (
        ("drop", fault.drop_after_events),
        ("error", fault.error_after_events),
        ("hang", fault.hang_after_events),
    ):
        if after is not None and (action is None or after < cut):
            cut, action = min(after, n_events), name
    return cut, action
