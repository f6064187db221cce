"""The relay tap for an OpenAI Chat Completions stream relayed as it is (the raw OpenAI lane:
an OpenAI client through /v1/chat/completions to an OpenAI-compatible provider).

``feed`` returns whole SSE events, byte for byte as the upstream sent them. A copy is
translated (``OpenAIStreamTranslator``) into the Anthropic events it means and shown to the
same observers as on the Anthropic lane (usage, tool policy), so the ledger and the guards
see one stream shape.
"""

from __future__ import annotations

from sluice.errors import GatewayError
from sluice.streaming.sse import SseSplitter
from sluice.streaming.tap import SseObserver, StreamTap
from sluice.translate.openai_stream import OpenAIStreamTranslator


class ChatChunksTap:
    __slots__ = ("_splitter", "_tap", "_translator")

    def __init__(self, observers: list[SseObserver], model: str) -> None:
        self._splitter = SseSplitter()
        self._translator = OpenAIStreamTranslator(model)
        self._tap = StreamTap(observers)

    @property
    def verdict(self) -> GatewayError | None:
        return self._tap.verdict

    def feed(self, chunk: bytes) -> bytes:
        if self._tap.verdict is not None:
            return b""
        ready, _events = self._splitter.feed(chunk)
        if not ready:
            return b""
        self._tap.feed(self._translator.feed(ready))
        # A verdict withholds the events it was found in; the relay ends the stream.
        return b"" if self._tap.verdict is not None else ready

    def finish(self) -> bytes:
        """At a clean end: whatever the translator still holds reaches the observers."""
        self._tap.feed(self._translator.finish())
        return b"" if self._tap.verdict is not None else self._splitter.pending
