"""The relay tap: sees every event on its way to the client, never changes a byte.

``feed`` returns the bytes that may go to the client now (whole events only). Observers get
each event first; one may return a verdict (a ``GatewayError``), which withholds that event
and everything after it so the relay can end the stream with an error frame instead.
"""

from __future__ import annotations

import time
from typing import Protocol

import orjson

from sluice.base.usage import INPUT_KEPT_TOOLS, MAX_KEPT_INPUT, ResponseFacts, ToolCall
from sluice.errors import GatewayError
from sluice.streaming.sse import SseEvent, SseSplitter


class SseObserver(Protocol):
    def on_event(self, event: SseEvent) -> GatewayError | None: ...


class AnthropicFactsObserver:
    """Collects usage, ids, stop reason, tool calls and first-token time from Anthropic SSE.

    Only the few event kinds that carry facts are JSON-decoded; deltas are not, except for
    noting when the first one arrives.
    """

    __slots__ = ("_kept", "facts")

    def __init__(self, facts: ResponseFacts) -> None:
        self.facts = facts
        self._kept: _KeptInput | None = None  # a subagent launch's input, being streamed

    def on_event(self, event: SseEvent) -> GatewayError | None:
        facts = self.facts
        facts.events += 1
        name = event.name
        if name == b"content_block_delta":
            if facts.first_token_at is None:
                facts.first_token_at = time.perf_counter()
            if self._kept is not None:
                self._kept.delta(event.data)
            return None
        if name == b"content_block_stop" and self._kept is not None:
            self._kept.stop()
            self._kept = None
            return None
        if name not in _INTERESTING:
            return None
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        if name == b"message_start":
            facts.apply_message(payload.get("message"))
        elif name == b"message_delta":
            facts.usage.apply(payload.get("usage"))
            delta = payload.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                facts.stop_reason = delta["stop_reason"]
        elif name == b"content_block_start":
            block = payload.get("content_block")
            if isinstance(block, dict):
                call = facts.add_tool_call(block)
                if call is not None and call.name in INPUT_KEPT_TOOLS:
                    self._kept = _KeptInput(call, payload.get("index"))
        elif name == b"error":
            error = payload.get("error")
            if isinstance(error, dict):
                facts.stream_error_type = str(error.get("type"))
        return None


_INTERESTING = frozenset({b"message_start", b"message_delta", b"content_block_start", b"error"})


class _KeptInput:
    """Gathers one tool call's streamed ``input_json_delta`` fragments (only for
    ``INPUT_KEPT_TOOLS``, rare: other deltas are never decoded), bounded in size."""

    __slots__ = ("_call", "_index", "_parts", "_size")

    def __init__(self, call: ToolCall, index: object) -> None:
        self._call = call
        self._index = index
        self._parts: list[str] = []
        self._size = 0

    def delta(self, data: bytes) -> None:
        if self._size > MAX_KEPT_INPUT:
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict) or payload.get("index") != self._index:
            return
        delta = payload.get("delta")
        part = delta.get("partial_json") if isinstance(delta, dict) else None
        if isinstance(part, str):
            self._parts.append(part)
            self._size += len(part)

    def stop(self) -> None:
        """At its block's end (Anthropic streams one content block at a time)."""
        if self._size <= MAX_KEPT_INPUT:
            self._call.input = "".join(self._parts).encode()


class StreamTap:
    __slots__ = ("_observers", "_splitter", "verdict")

    def __init__(self, observers: list[SseObserver]) -> None:
        self._observers = observers
        self._splitter = SseSplitter()
        self.verdict: GatewayError | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self.verdict is not None:
            return b""
        ready, events = self._splitter.feed(chunk)
        for index, event in enumerate(events):
            for observer in self._observers:
                verdict = observer.on_event(event)
                if verdict is not None:
                    self.verdict = verdict
                    return b"".join(e.raw for e in events[:index])
        return ready

    def finish(self) -> bytes:
        """At a clean end of stream: whatever trailing bytes never formed a whole event."""
        if self.verdict is not None:
            return b""
        return self._splitter.pending
