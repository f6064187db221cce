"""OpenAI Chat Completions SSE → Anthropic Messages SSE, incrementally.

Claude Code (through the official SDK) only accepts a stream that starts with
``message_start``, names every event on an ``event:`` line, numbers blocks 0, 1, 2… in start
order and has exactly one block open at a time. OpenAI may interleave the argument fragments
of parallel tool calls, so a tool call that starts while another is still open is buffered
and emitted once the open one is finished. An open tool call counts as finished as soon as
its arguments form a complete JSON value, which keeps the usual sequential case streaming
live instead of holding every later call until the end.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from .openai_response import (
    anthropic_error,
    error_message,
    error_type_for,
    stop_reason_for,
    usage_from_openai,
)

_IN_STRING = re.compile(r'["\\]')
_STRUCTURAL = re.compile(r'[{}\[\]"]')


@dataclass(slots=True)
class _JsonEnd:
    """Tells when concatenated fragments have closed their top-level object or array."""

    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    complete: bool = False

    def feed(self, text: str) -> None:
        i, n = 0, len(text)
        while i < n and not self.complete:
            if self.escaped:
                self.escaped = False
                i += 1
            elif self.in_string:
                m = _IN_STRING.search(text, i)
                if m is None:
                    return
                i = m.end()
                if m.group() == "\\":
                    self.escaped = True
                else:
                    self.in_string = False
            else:
                m = _STRUCTURAL.search(text, i)
                if m is None:
                    return
                i = m.end()
                char = m.group()
                if char == '"':
                    self.in_string = True
                elif char in "{[":
                    self.depth += 1
                else:
                    self.depth -= 1
                    self.complete = self.depth <= 0


@dataclass(slots=True, eq=False)
class _Block:
    kind: str  # "text" or "tool_use"
    index: int = -1  # Anthropic block index, set when the block opens
    tool_id: str = ""
    upstream_id: str | None = None
    name: str = ""
    pending: list[str] = field(default_factory=list)  # fragments held until the block opens
    started: bool = False
    closed: bool = False
    json: _JsonEnd = field(default_factory=_JsonEnd)

    def finished(self) -> bool:
        # Text can always close once something follows it: later text opens a new block.
        return self.kind == "text" or self.json.complete


class OpenAIStreamTranslator:
    """Feed raw OpenAI SSE bytes, get the Anthropic SSE bytes to send at once."""

    def __init__(self, model: str, message_id: str | None = None) -> None:
        self._model = model
        self._message_id = message_id
        self._buf = bytearray()
        self._started = False
        self._done = False  # message_stop or error sent: ignore everything after
        self._blocks: list[_Block] = []
        self._live = 0  # index of the first block not yet closed
        self._tools: dict[int, _Block] = {}  # OpenAI tool_calls[].index → block
        self._finish_reason: str | None = None
        self._refusal = False
        self._usage: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def usage(self) -> dict[str, int] | None:
        """Anthropic-shaped usage once the upstream reported it."""
        return usage_from_openai(self._usage) if self._usage else None

    def feed(self, chunk: bytes) -> bytes:
        if self._done:
            return b""
        newline = chunk.rfind(b"\n")
        if newline < 0:
            self._buf += chunk
            return b""
        # Only the new chunk is searched, so a long line fed in tiny pieces stays linear.
        data = bytes(self._buf) + chunk[:newline]
        self._buf = bytearray(chunk[newline + 1 :])
        out: list[bytes] = []
        for line in data.split(b"\n"):
            self._line(line.rstrip(b"\r"), out)
            if self._done:
                break
        return b"".join(out)

    def finish(self) -> bytes:
        """Upstream EOF: close what is open and end the message if nobody did."""
        if self._done:
            return b""
        out: list[bytes] = []
        rest = bytes(self._buf).strip()
        self._buf.clear()
        if rest:
            self._line(rest, out)
        if not self._done:
            self._start(out, None)
            if self._finish_reason is None:
                # A cut-off stream must not look like a finished turn: a truncated tool
                # call would be executed. An error frame makes Claude Code retry instead.
                msg = "upstream stream ended before the message was finished"
                self._error(out, "api_error", msg)
            else:
                self._complete(out)
        return b"".join(out)

    # ------------------------------------------------------------ input

    def _line(self, line: bytes, out: list[bytes]) -> None:
        # One chunk per data line (OpenAI never splits JSON over lines); comments, event:
        # and id: lines are ignored, which also copes with servers that skip blank lines.
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data:
            return
        if data == b"[DONE]":
            self._start(out, None)
            self._complete(out)
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = None
        if not isinstance(chunk, dict):
            self._start(out, None)
            self._error(out, "api_error", "upstream sent a stream chunk that is not JSON")
            return
        self._start(out, chunk.get("id"))
        if chunk.get("error"):
            message, upstream_type, code = error_message(chunk, "upstream stream error")
            self._error(out, error_type_for(None, upstream_type, code), message)
            return
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:  # we never ask for n > 1
                continue
            self._delta(choice.get("delta") or {}, out)
            if self._done:
                return
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                self._pump(out, final=True)
        if chunk.get("usage"):
            self._usage = chunk["usage"]

    def _delta(self, delta: dict[str, Any], out: list[bytes]) -> None:
        # reasoning_content / reasoning are dropped: thinking blocks need a signature.
        text = delta.get("content") or ""
        if delta.get("refusal"):
            self._refusal = True
            text += delta["refusal"]
        if text:
            last = self._blocks[-1] if self._blocks else None
            if last is None or last.kind != "text" or last.closed:
                last = _Block("text")
                self._blocks.append(last)
            self._append(last, text, out)
        for call in delta.get("tool_calls") or []:
            self._tool_fragment(call, out)
            if self._done:
                return

    def _tool_fragment(self, call: dict[str, Any], out: list[bytes]) -> None:
        index = call.get("index", 0)
        function = call.get("function") or {}
        upstream_id = call.get("id")
        block = self._tools.get(index)
        # Some OpenAI-compatible servers reuse index 0 for every call, with distinct ids.
        if block is None or (upstream_id and block.upstream_id not in (None, upstream_id)):
            tool_id = upstream_id or f"toolu_{self._message_id}_{len(self._blocks)}"
            block = _Block("tool_use", tool_id=tool_id, upstream_id=upstream_id)
            self._tools[index] = block
            self._blocks.append(block)
        if function.get("name") and not block.name:
            block.name = function["name"]
        if function.get("arguments"):
            self._append(block, function["arguments"], out)
        else:
            self._pump(out)

    # ------------------------------------------------------------ output

    def _append(self, block: _Block, text: str, out: list[bytes]) -> None:
        if block.kind == "tool_use":
            if block.closed:
                if text.strip():
                    msg = f"upstream sent arguments for tool call {block.tool_id} after it ended"
                    self._error(out, "api_error", msg)
                return  # whitespace after a complete JSON value changes nothing
            block.json.feed(text)
        if block.started:
            self._emit_delta(block, text, out)
        else:
            block.pending.append(text)
        self._pump(out)

    def _pump(self, out: list[bytes], *, final: bool = False) -> None:
        """Open, flush and close blocks in order, as far as the state allows."""
        while self._live < len(self._blocks):
            block = self._blocks[self._live]
            if not block.started:
                if block.kind == "tool_use" and not block.name and not final:
                    return  # content_block_start needs the name
                block.index = self._live
                start = {
                    "type": "content_block_start",
                    "index": block.index,
                    "content_block": _start_shape(block),
                }
                self._emit(out, "content_block_start", start)
                block.started = True
                if block.pending:
                    self._emit_delta(block, "".join(block.pending), out)
                    block.pending.clear()
            is_last = self._live == len(self._blocks) - 1
            if not final and (is_last or not block.finished()):
                return
            stop = {"type": "content_block_stop", "index": self._live}
            self._emit(out, "content_block_stop", stop)
            block.closed = True
            self._live += 1

    def _emit_delta(self, block: _Block, text: str, out: list[bytes]) -> None:
        if block.kind == "text":
            delta = {"type": "text_delta", "text": text}
        else:
            delta = {"type": "input_json_delta", "partial_json": text}
        payload = {"type": "content_block_delta", "index": block.index, "delta": delta}
        self._emit(out, "content_block_delta", payload)

    def _start(self, out: list[bytes], chunk_id: Any) -> None:
        if self._started:
            return
        self._started = True
        if self._message_id is None:
            suffix = chunk_id if isinstance(chunk_id, str) and chunk_id else uuid.uuid4().hex
            self._message_id = f"msg_{suffix}"
        # Input usage is unknown until the last chunk; message_delta carries the totals.
        usage = {
            "input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        }
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        self._emit(out, "message_start", {"type": "message_start", "message": message})

    def _complete(self, out: list[bytes]) -> None:
        self._pump(out, final=True)
        has_tools = any(b.kind == "tool_use" for b in self._blocks)
        stop_reason = stop_reason_for(self._finish_reason, has_tool_calls=has_tools)
        if self._refusal and stop_reason == "end_turn":
            stop_reason = "refusal"
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": self.usage or {"output_tokens": 0},
        }
        self._emit(out, "message_delta", delta)
        self._emit(out, "message_stop", {"type": "message_stop"})
        self._done = True

    def _error(self, out: list[bytes], error_type: str, message: str) -> None:
        self._emit(out, "error", anthropic_error(error_type, message))
        self._done = True

    @staticmethod
    def _emit(out: list[bytes], event: str, payload: dict[str, Any]) -> None:
        out.append(b"event: %s\ndata: %s\n\n" % (event.encode(), orjson.dumps(payload)))


def _start_shape(block: _Block) -> dict[str, Any]:
    if block.kind == "text":
        return {"type": "text", "text": ""}
    return {"type": "tool_use", "id": block.tool_id, "name": block.name, "input": {}}
