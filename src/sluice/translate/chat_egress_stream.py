"""Anthropic Messages SSE → OpenAI ``chat.completion.chunk`` SSE, incrementally.

:class:`SseToChatChunks` takes the Anthropic stream in any chunking (partial lines and events
are buffered; LF, CRLF and CR line ends) and returns the OpenAI lines to send at once:

* ``message_start`` → the first chunk, ``delta: {"role": "assistant", "content": ""}``.
* ``text_delta`` → ``delta.content``. Thinking and server-tool blocks are left out.
* a ``tool_use`` block → ``delta.tool_calls[{index, id, type, function: {name, arguments: ""}}]``
  and each ``input_json_delta`` → ``delta.tool_calls[{index, function: {arguments}}]``.
  ``index`` counts tool calls from 0, whatever the Anthropic block index.
* ``message_delta.stop_reason`` → a chunk with ``finish_reason`` and an empty delta.
* ``message_stop`` → with ``include_usage``, a chunk with ``choices: []`` and ``usage``
  (input from ``message_start``, overwritten by any total in ``message_delta`` as the SDKs
  do); then ``data: [DONE]``.
* ``ping`` → the SSE comment ``: ping``, which OpenAI clients skip but which keeps idle
  connections (and proxies) from timing out during long thinking.
* ``error`` → ``data: {"error": {...}}`` in OpenAI's shape, and the stream ends there with no
  ``[DONE]``: the ``openai`` SDK raises ``APIError`` on such a line, so a client never takes a
  failed answer for a finished one. The same happens when the Anthropic stream ends before
  ``message_delta`` (:meth:`SseToChatChunks.finish`), because a truncated tool call must not
  be run.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from .chat_egress import chat_completion_id, openai_error_for
from .openai_response import finish_reason_for, token_count, usage_to_openai

__all__ = ["SseToChatChunks"]

_LINE_END: Final = re.compile(rb"\r\n|\r|\n")
_DONE: Final = b"data: [DONE]\n\n"
_PING: Final = b": ping\n\n"
_USAGE_KEYS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


class SseToChatChunks:
    """Feed Anthropic SSE bytes, get the OpenAI Chat Completions SSE bytes to send."""

    def __init__(self, model: str, created: int, include_usage: bool) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._buf = bytearray()
        self._event: bytes = b""
        self._data: list[bytes] = []
        self._id: str | None = None
        self._head = b""  # the constant start of every chunk, once the id is known
        self._done = False  # [DONE] or an error sent: ignore everything after
        self._tools: dict[int, int] = {}  # Anthropic block index → tool_calls[].index
        self._finish: str | None = None  # finish_reason, once sent
        self._usage: dict[str, int] = {}

    @property
    def done(self) -> bool:
        """True once the stream was ended, by ``[DONE]`` or by an error line."""
        return self._done

    def feed(self, chunk: bytes) -> bytes:
        if self._done:
            return b""
        if b"\n" not in chunk and b"\r" not in chunk:
            self._buf += chunk  # no line ends: nothing to parse yet
            return b""
        data = bytes(self._buf) + chunk
        hold = b""
        if data.endswith(b"\r"):  # maybe the first half of a CRLF
            data, hold = data[:-1], b"\r"
        lines = _LINE_END.split(data)
        self._buf = bytearray(lines.pop() + hold)
        out: list[bytes] = []
        for line in lines:
            self._line(line, out)
            if self._done:
                break
        return b"".join(out)

    def finish(self) -> bytes:
        """End of the Anthropic stream: end the OpenAI one if nothing did."""
        if self._done:
            return b""
        out: list[bytes] = []
        for line in _LINE_END.split(bytes(self._buf)):
            self._line(line, out)
            if self._done:
                return b"".join(out)
        self._buf.clear()
        if not self._done:
            self._dispatch(out)  # an event not followed by a blank line
        if self._done:
            return b"".join(out)
        if self._finish is not None:
            self._complete(out)  # message_delta came, only message_stop is missing
        else:
            msg = "the upstream stream ended before the message was finished"
            self._error(out, "api_error", msg)
        return b"".join(out)

    # ------------------------------------------------------------ input

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if not line:
            self._dispatch(out)
        elif not line.startswith(b":"):  # comments are skipped
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value

    def _dispatch(self, out: list[bytes]) -> None:
        data, event = b"\n".join(self._data), self._event.decode("utf-8", "replace")
        self._data, self._event = [], b""
        if not data:
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            self._error(out, "api_error", "the upstream sent a stream event that is not JSON")
            return
        kind = payload.get("type") or event
        if kind == "content_block_delta":
            self._delta(payload, out)
        elif kind == "content_block_start":
            self._block_start(payload, out)
        elif kind == "message_start":
            self._message_start(payload, out)
        elif kind == "message_delta":
            self._message_delta(payload, out)
        elif kind == "message_stop":
            self._complete(out)
        elif kind == "ping":
            out.append(_PING)
        elif kind == "error":
            error = payload.get("error")
            error = error if isinstance(error, dict) else {}
            message = error.get("message")
            text = message if isinstance(message, str) else "upstream stream error"
            self._error(out, error.get("type"), text)
        # content_block_stop and unknown events carry nothing a Chat client can use.

    def _message_start(self, payload: dict[str, Any], out: list[bytes]) -> None:
        message = payload.get("message")
        message = message if isinstance(message, dict) else {}
        if self._id is None:
            self._id = chat_completion_id(message.get("id"))
        self._take_usage(message.get("usage"))
        self._role(out)

    def _block_start(self, payload: dict[str, Any], out: list[bytes]) -> None:
        block = payload.get("content_block")
        position = payload.get("index")
        if not isinstance(block, dict) or block.get("type") != "tool_use":
            return
        if not isinstance(position, int) or position in self._tools:
            return  # not a new block: nothing a client could tell apart
        index = self._tools[position] = len(self._tools)
        name = block.get("name")
        call = {
            "index": index,
            "id": str(block.get("id") or f"call_{index}"),
            "type": "function",
            "function": {"name": name if isinstance(name, str) else "", "arguments": ""},
        }
        self._role(out)
        out.append(self._chunk({"tool_calls": [call]}))

    def _delta(self, payload: dict[str, Any], out: list[bytes]) -> None:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                self._role(out)
                out.append(self._chunk({"content": text}))
        elif kind == "input_json_delta":
            position = payload.get("index")
            index = self._tools.get(position) if isinstance(position, int) else None
            partial = delta.get("partial_json")
            if index is not None and isinstance(partial, str) and partial:
                call = {"index": index, "function": {"arguments": partial}}
                out.append(self._chunk({"tool_calls": [call]}))
        # thinking_delta, signature_delta and citations_delta have no Chat equivalent.

    def _message_delta(self, payload: dict[str, Any], out: list[bytes]) -> None:
        self._take_usage(payload.get("usage"))
        delta = payload.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is not None and self._finish is None:
            self._send_finish(stop_reason, out)

    def _take_usage(self, usage: Any) -> None:
        # Anthropic's counts are totals for the whole message: overwrite, never add.
        if not isinstance(usage, dict):
            return
        for key in _USAGE_KEYS:
            value = token_count(usage.get(key))
            if value is not None:
                self._usage[key] = value

    # ------------------------------------------------------------ output

    def _role(self, out: list[bytes]) -> None:
        if self._head:
            return
        if self._id is None:  # no message_start: still answer under some id
            self._id = chat_completion_id(None)
        head = {"id": self._id, "object": "chat.completion.chunk", "created": self._created}
        self._head = b"data: " + orjson.dumps({**head, "model": self._model})[:-1]
        out.append(self._chunk({"role": "assistant", "content": ""}))

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b'%s,"choices":[%s]}\n\n' % (self._head, orjson.dumps(choice))

    def _send_finish(self, stop_reason: Any, out: list[bytes]) -> None:
        self._role(out)
        self._finish = finish_reason_for(stop_reason, has_tool_calls=bool(self._tools))
        out.append(self._chunk({}, self._finish))

    def _complete(self, out: list[bytes]) -> None:
        if self._finish is None:
            self._send_finish(None, out)
        if self._include_usage:
            usage = orjson.dumps(usage_to_openai(self._usage))
            out.append(b'%s,"choices":[],"usage":%s}\n\n' % (self._head, usage))
        out.append(_DONE)
        self._done = True

    def _error(self, out: list[bytes], error_type: Any, message: str) -> None:
        out.append(b"data: %s\n\n" % orjson.dumps(openai_error_for(error_type, message)))
        self._done = True
