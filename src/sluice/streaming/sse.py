"""Split a byte stream into complete SSE events without changing a byte.

``SseSplitter.feed`` returns the longest prefix of everything fed so far that ends on an
event boundary (a blank line), plus the events in it. The relay forwards exactly that prefix,
so a client never holds half an event when the gateway must end the stream with an error
frame, and a policy guard sees each event before the client does. LF, CR and CRLF line
endings are all accepted (WHATWG), though Anthropic sends LF.
"""

from __future__ import annotations

import re

import msgspec

_BLANK_LINE_ANY = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE_ANY = re.compile(rb"\r\n|\r|\n")


class SseEvent(msgspec.Struct, frozen=True):  # a Struct: built in C, per event
    name: bytes  # b"" when the event has no `event:` line
    data: bytes  # `data:` lines joined with b"\n"
    raw: bytes  # the exact bytes of the event, including its terminating blank line


def parse_event(block: bytes, raw: bytes) -> SseEvent:
    """Parse one event block (its lines, without the blank line) per the SSE line rules."""
    name = b""
    data: list[bytes] = []
    lines = block.split(b"\n") if b"\r" not in block else _LINE_ANY.split(block)
    for line in lines:
        if not line or line[:1] == b":":
            continue
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"event":
            name = value
        elif field == b"data":
            data.append(value)
    return SseEvent(name, b"\n".join(data), raw)


class SseSplitter:
    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    @property
    def pending(self) -> bytes:
        """Bytes fed but not yet released: an event still in progress."""
        return self._pending

    def feed(self, chunk: bytes) -> tuple[bytes, list[SseEvent]]:
        buf = self._pending + chunk if self._pending else chunk
        if b"\r" not in buf:
            end = buf.rfind(b"\n\n")
            if end < 0:
                self._pending = buf
                return b"", []
            end += 2
            ready, self._pending = buf[:end], buf[end:]
            events = []
            start = 0
            while start < end:
                stop = ready.find(b"\n\n", start)
                if stop < 0:  # b"\n\n\n": rfind overlapped; the last LF opens the next block
                    ready, self._pending = buf[:start], buf[start:]
                    break
                events.append(parse_event(ready[start:stop], ready[start : stop + 2]))
                start = stop + 2
            return ready, events
        return self._feed_general(buf)

    def _feed_general(self, buf: bytes) -> tuple[bytes, list[SseEvent]]:
        events = []
        start = 0
        end = 0
        for match in _BLANK_LINE_ANY.finditer(buf):
            if match.end() == len(buf) and buf.endswith(b"\r"):
                break  # a trailing CR may be the first half of CRLF: wait for more
            events.append(parse_event(buf[start : match.start()], buf[start : match.end()]))
            start = end = match.end()
        ready, self._pending = buf[:end], buf[end:]
        return ready, events
