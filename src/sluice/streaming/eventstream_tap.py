"""The relay tap for a Bedrock event stream relayed as it is (the raw Bedrock lane: a Bedrock
client through the /bedrock door to a Bedrock provider).

``feed`` returns whole frames, byte for byte as the upstream sent them. A copy of each frame
is decoded (botocore, via ``EventStreamToSSE``) into the Anthropic SSE event it carries and
shown to the same observers as on the SSE lane (usage, tool policy), so the ledger and the
guards see one stream shape. Only the frame's 4-byte length prefix is read here, to know
where a frame ends; framing and CRCs are botocore's.
"""

from __future__ import annotations

from sluice.errors import GatewayError, ProviderError
from sluice.streaming.eventstream import EventStreamToSSE
from sluice.streaming.tap import SseObserver, StreamTap

_PRELUDE = 4
_MAX_FRAME = 16 * 1024 * 1024  # botocore's own bound on one message


class EventStreamTap:
    __slots__ = ("_buffer", "_decoder", "_tap")

    def __init__(self, observers: list[SseObserver]) -> None:
        self._buffer = bytearray()
        self._decoder = EventStreamToSSE(strip_invocation_metrics=True)
        self._tap = StreamTap(observers)

    @property
    def verdict(self) -> GatewayError | None:
        return self._tap.verdict

    def feed(self, chunk: bytes) -> bytes:
        if self._tap.verdict is not None:
            return b""
        buffer = self._buffer
        buffer += chunk
        end = 0
        while len(buffer) - end >= _PRELUDE:
            size = int.from_bytes(buffer[end : end + _PRELUDE], "big")
            if not _PRELUDE < size <= _MAX_FRAME:
                raise ProviderError(f"The upstream sent an event-stream frame of {size} bytes.")
            if len(buffer) - end < size:
                break
            end += size
        if end == 0:
            return b""
        frames = bytes(buffer[:end])
        del buffer[:end]
        self._tap.feed(self._decoder.feed(frames))
        # A verdict withholds the frames it was found in; the relay ends the stream.
        return b"" if self._tap.verdict is not None else frames

    def finish(self) -> bytes:
        """At a clean end: the decoder's held event reaches the observers; a partial frame
        (a cut connection) is dropped rather than sent half."""
        self._tap.feed(self._decoder.finish())
        return b""
