"""The OpenAI Chat Completions door: ``POST /v1/chat/completions`` for every agent that speaks
OpenAI (the ``openai`` SDKs, Cursor, aider, opencode, Continue), under the same keys, budgets,
policy and traces as Claude Code. The virtual key comes as ``Authorization: Bearer``.

The way in: the Chat request becomes a Messages body (``translate/chat_ingress.py``); what has
no Messages equivalent is a 400 in OpenAI's error shape, never dropped. The way out: a
Message becomes a ``chat.completion``, a stream becomes ``chat.completion.chunk`` lines with
``tool_calls`` deltas, ``finish_reason`` and (with ``stream_options.include_usage``) usage,
and every error takes OpenAI's shape. The answer names the model the client asked for.
"""

from __future__ import annotations

import time

import orjson

from sluice.base.asgi import Send
from sluice.core.context import RequestContext
from sluice.core.doors.reshape import Headers, reshaping_send
from sluice.errors import InvalidRequest
from sluice.translate.chat_egress import anthropic_error_to_openai, message_to_chat_completion
from sluice.translate.chat_egress_stream import SseToChatChunks
from sluice.translate.chat_ingress import chat_to_messages
from sluice.translate.openai_chat import TranslationError

PATH = "/v1/chat/completions"


class OpenAIChatDoor:
    """One request's door: it learns the client's model and stream options on the way in and
    uses them on the way out."""

    endpoint = "messages"

    def __init__(self) -> None:
        self.model = ""
        self.include_usage = False
        self.created = int(time.time())

    @property
    def name(self) -> str:
        return "openai"

    def inbound(self, ctx: RequestContext) -> None:
        try:
            parsed = orjson.loads(ctx.body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
        try:
            request = chat_to_messages(parsed)
        except TranslationError as exc:
            raise InvalidRequest(str(exc), param=exc.param) from exc
        self.model, self.include_usage = request.model, request.include_usage
        ctx.body = request.messages_body
        ctx.path, ctx.query = "/v1/messages", ""

    def outbound(self, send: Send, ctx: RequestContext) -> Send:
        return reshaping_send(send, _ChatReshape(self, ctx))


class _ChatReshape:
    def __init__(self, door: OpenAIChatDoor, ctx: RequestContext) -> None:
        self._door = door
        self._ctx = ctx
        self._stream: SseToChatChunks | None = None
        self._raw = False  # an OpenAI upstream's own answer (the raw lane): sent as it is

    def stream_start(self, headers: Headers) -> Headers:
        door = self._door
        self._stream = SseToChatChunks(door.model, door.created, door.include_usage)
        self._raw = self._ctx.upstream_shape == "openai"
        return headers  # still text/event-stream

    def stream_chunk(self, chunk: bytes) -> bytes:
        assert self._stream is not None
        if self._raw and not chunk.startswith(b"event: "):
            # The upstream's whole chunks, as it sent them; only the gateway's own frames
            # (Anthropic SSE: pings, errors) are translated.
            return chunk
        return self._stream.feed(chunk)

    def stream_end(self) -> bytes:
        assert self._stream is not None
        return b"" if self._raw else self._stream.finish()

    def whole(self, status: int, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        if status < 400 and self._ctx.upstream_shape == "openai":
            return status, headers, body  # the raw lane: the upstream's own chat.completion
        if status >= 400:
            status, error = anthropic_error_to_openai(status, body)
            return status, headers, orjson.dumps(error)
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return status, headers, body
        if not isinstance(message, dict):
            return status, headers, body
        door = self._door
        completion = message_to_chat_completion(message, model=door.model, created=door.created)
        return status, headers, orjson.dumps(completion)
