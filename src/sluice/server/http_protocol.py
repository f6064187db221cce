"""uvicorn's httptools protocol with limits at the connection edge, before any auth.

httptools enforces no limit of its own: a header section is buffered whole (a long header
value is even concatenated piece by piece), and a connection may take forever to send it.
This subclass adds, per process and per connection:

- a cap on the request line plus header section (``server.max_header_bytes``) and on the
  header count (``server.max_headers``): 431 in the Anthropic error shape, then close,
  without reading the rest;
- a header-read timeout (``server.header_timeout_s``), from connect or from a request's first
  byte: 408 if part of a head arrived, then close;
- a body-read idle timeout (``server.body_idle_timeout_s``): close;
- an optional cap on open connections (``server.max_connections``): 503, then close.

Costs on the hot path: per read, a few attribute reads (and the loop's clock while a body is
read); no per-request timer: one lazy timer per connection is re-armed only when it fires.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, cast

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from sluice.base.asgi import (
    DISCONNECT_EXTENSION,
    DisconnectSignal,
    anthropic_error_body,
    error_headers,
    request_id_headers,
)
from sluice.base.clock import new_request_id
from sluice.errors import (
    GatewayError,
    RequestHeadersTooLarge,
    RequestTimeout,
    TooManyConnections,
)
from sluice.server.edge_limits import EdgeLimits
from sluice.server.head_writer import HeadWriter

log = logging.getLogger("sluice.edge")


def error_response(err: GatewayError, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, in the Anthropic error shape."""
    rid = new_request_id()
    body = orjson.dumps(anthropic_error_body(err, rid))
    lines = [STATUS_LINE[err.status]]
    headers = [
        *default_headers,  # uvicorn's (date)
        (b"content-type", b"application/json"),
        *request_id_headers(rid),
        *error_headers(err),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
    ]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing; feed_data re-raises it as context."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


def _too_large(limits: EdgeLimits, what: str) -> _HeadRefused:
    return _HeadRefused(
        RequestHeadersTooLarge(
            f"Request {what} exceeds the gateway limit.",
            meta={"max_header_bytes": limits.max_header_bytes, "max_headers": limits.max_headers},
            tips=["Send fewer or smaller headers, or raise server.max_header_bytes/max_headers."],
        )
    )


class SluiceHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: EdgeLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._head_open = False  # a request head has begun and is not complete
        self._idle = True  # no request in progress (fresh connection, or the last one ended)
        self._begun = 0  # requests begun on this connection
        self._in_body = False  # head complete, message not complete
        self._head_bytes = 0  # wire bytes of the open head, in whole reads before this one
        self._read_len = 0  # bytes in the read being parsed
        self._in_chunk = False  # between a chunk's header and its end (chunked bodies)
        self._trailer_bytes = 0  # reads with no body bytes since a chunk header
        self._head_due = 0.0  # loop time by which the open head must be complete; 0: none
        self._body_rx_at = 0.0  # loop time of the last read inside a body
        # One lazy timer per connection: never cancelled on the hot path; when it fires it
        # checks the deadlines above and re-arms itself for the nearest (or lapses).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0

    # Connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        cap = self.limits.max_connections
        if cap is not None and len(self.connections) >= cap:
            # Not added to the server's connection set: it never counts against the cap.
            self.transport = transport
            self._refuse(TooManyConnections(f"The gateway is at its limit of {cap} connections."))
            return
        super().connection_made(transport)
        self._head_due = self.loop.time() + self.limits.header_timeout_s
        self._arm(self._head_due)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            # The request's handler learns it from a callback, not a task on receive().
            extensions = cast(dict[str, Any], cycle.scope.get("extensions") or {})
            signal = extensions.get(DISCONNECT_EXTENSION)
            if isinstance(signal, DisconnectSignal):
                signal.fire()

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, plus the limits: its own would answer 400 to a refusal.
        self._unset_keepalive_if_required()
        idle, begun = self._idle, self._begun
        self._read_len = len(data)
        body_before = len(self.cycle.body) if self._in_chunk else -1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse(exc.__context__.error)
            else:
                self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._head_open:
            self._head_progress(len(data), self._begun - begun, idle)
        elif self._in_body:
            if body_before >= 0 and self._in_chunk:
                self._chunk_progress(len(data), len(self.cycle.body) > body_before)
            self._body_rx_at = now = self.loop.time()
            due = now + self.limits.body_idle_timeout_s
            if self._timer is None or self._timer_due > due:
                self._arm(due)

    def _chunk_progress(self, size: int, had_body: bool) -> None:
        """A read ended inside a chunk of a chunked body. A read with no body bytes after a
        chunk header is (part of) the trailer section, which httptools buffers whole: cap it
        like a header section. Chunked bodies only, so no cost for Content-Length ones."""
        if had_body:
            self._trailer_bytes = 0
            return
        self._trailer_bytes += size
        if self._trailer_bytes > self.limits.max_header_bytes:
            self._refuse(_too_large(self.limits, "trailer section").error)

    def _head_progress(self, size: int, new: int, idle: bool) -> None:
        """A read ended inside a request head: count it, cap it, time it."""
        # The whole read belongs to this head unless a pipelined request ended in it; then
        # the head's first read goes uncounted (slack of one read, never a false refusal).
        if new == 0 or (new == 1 and idle):
            self._head_bytes += size
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(_too_large(self.limits, "header section").error)
                return
        if not self._head_due:
            self._head_due = due = self.loop.time() + self.limits.header_timeout_s
            if self._timer is None or self._timer_due > due:
                self._arm(due)

    # Parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        cast(dict[str, Any], self.scope)["extensions"] = {DISCONNECT_EXTENSION: DisconnectSignal()}
        self._head_open, self._idle = True, False
        self._begun += 1
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_open, self._in_body = False, True
        self._head_due = 0.0
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            raise _too_large(limits, "header count")
        # The head fits if all the reads it spans do; else (rare) measure it exactly.
        if self._head_bytes + self._read_len > limits.max_header_bytes:
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > limits.max_header_bytes:
                raise _too_large(limits, "header section")
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before:
            writer = HeadWriter(self.transport, self.loop, cycle.on_response)
            cycle.transport, cycle.on_response = writer, writer.completed  # type: ignore[assignment]

    def on_chunk_header(self) -> None:
        self._in_chunk = True

    def on_chunk_complete(self) -> None:
        self._in_chunk = False
        self._trailer_bytes = 0

    def on_message_complete(self) -> None:
        self._in_body, self._idle = False, True
        super().on_message_complete()

    # Timers and refusals ----------------------------------------------------------------

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(due, self._on_timer)
        self._timer_due = due

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time() + 0.001  # a timer may fire a hair early
        due = math.inf
        if self._head_due:
            if self.flow.read_paused:  # pipelined behind a running request: not the client's
                self._head_due = now + self.limits.header_timeout_s
            elif now >= self._head_due:
                self._head_timed_out()
                return
            due = self._head_due
        if self._in_body:
            cycle = self.cycle
            if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
                self._body_rx_at = now  # we are not reading (back-pressure, or 100-continue)
            if now >= self._body_rx_at + self.limits.body_idle_timeout_s:
                self._close("body_idle_timeout")
                return
            due = min(due, self._body_rx_at + self.limits.body_idle_timeout_s)
        if due < math.inf:
            self._arm(due)

    def _head_timed_out(self) -> None:
        if self._head_open:
            self._refuse(RequestTimeout("The request head was not received in time."))
        else:
            self._close("header_timeout")  # connected, sent nothing: close without a word

    def _refuse(self, err: GatewayError) -> None:
        """Answer ``err`` and close, without reading further; mid-response, only close."""
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(error_response(err, self.server_state.default_headers))
        self._close(err.code, status=err.status)

    def _bad_request(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")

    def _close(self, reason: str, status: int | None = None) -> None:
        self._cancel_timer()
        peer = get_remote_addr(self.transport)
        log.info(
            "edge: connection closed (%s)",
            reason,
            extra={"reason": reason, "status": status, "client": peer[0] if peer else None},
        )
        self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
