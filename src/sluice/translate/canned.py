"""Canned replies in the Anthropic Messages wire format: pure data and pure renderers.

A ``Reply`` (content blocks and usage) becomes the exact SSE events (protocols.md §2) or the
non-streaming ``Message`` JSON (§1.8) the real API would send, deterministically: the same
reply, model and request number always give the same bytes. The demo provider answers with
these, and the fake upstreams in ``sluice.testing`` script their replies with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "Block",
    "Reply",
    "ReplyUsage",
    "TextBlock",
    "ThinkingBlock",
    "ToolUseBlock",
    "error_body",
    "error_type_for_status",
    "message_json",
    "sse_event",
    "stream_events",
]

JSON = dict[str, Any]


@dataclass(frozen=True)
class ReplyUsage:
    input_tokens: int = 25
    output_tokens: int = 12
    cache_read_input_tokens: int = 0
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.cache_creation_5m + self.cache_creation_1h

    def start_usage(self) -> JSON:
        """`Usage` as sent in message_start (output_tokens is only a small first count)."""
        return self._usage(min(1, self.output_tokens))

    def final_usage(self) -> JSON:
        """`Usage` of a non-streaming Message; equals what the SDK accumulates from a stream."""
        return self._usage(self.output_tokens)

    def delta_usage(self) -> JSON:
        """message_delta usage: cumulative totals for the whole message."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": self.output_tokens,
        }

    def _usage(self, output_tokens: int) -> JSON:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_5m,
                "ephemeral_1h_input_tokens": self.cache_creation_1h,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }


@dataclass(frozen=True)
class TextBlock:
    text: str
    chunks: int = 3


@dataclass(frozen=True)
class ToolUseBlock:
    name: str
    input: JSON
    id: str | None = None
    fragment_size: int = 7


@dataclass(frozen=True)
class ThinkingBlock:
    thinking: str
    signature: str = "EqQBCkYIBRgCKkC...sig"
    chunks: int = 2


Block = TextBlock | ToolUseBlock | ThinkingBlock


def _default_blocks() -> list[Block]:
    return [TextBlock("Hello from the fake upstream.")]


@dataclass(frozen=True)
class Reply:
    blocks: list[Block] = field(default_factory=_default_blocks)
    usage: ReplyUsage = field(default_factory=ReplyUsage)
    model: str | None = None  # None: echo the request's model
    message_id: str | None = None  # None: "msg_fake_<n>", n = request counter
    pings: bool = True  # one ping right after the first content_block_start, like the API

    @property
    def stop_reason(self) -> str:
        return "tool_use" if any(isinstance(b, ToolUseBlock) for b in self.blocks) else "end_turn"


_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request (fake upstream)."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}


def error_type_for_status(status: int) -> str:
    return _ERRORS.get(status, ("api_error", ""))[0]


def error_body(
    status: int,
    request_id: str,
    *,
    error_type: str | None = None,
    message: str | None = None,
) -> bytes:
    """An Anthropic-shaped JSON error body (protocols.md §3.1)."""
    default_type, default_message = _ERRORS.get(status, ("api_error", f"Upstream error {status}."))
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": error_type or default_type, "message": message or default_message},
            "request_id": request_id,
        }
    )


def sse_event(event_type: str, payload: JSON) -> bytes:
    """One SSE frame exactly as the API frames it: event line, one-line compact data, blank."""
    return b"event: " + event_type.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _split(text: str, parts: int) -> list[str]:
    """Split into `parts` non-empty pieces of near-equal length (fewer if text is shorter)."""
    k = max(1, min(parts, len(text)))
    bounds = [len(text) * i // k for i in range(k + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(k)] if text else []


def _tool_id(block: ToolUseBlock, n: int, index: int) -> str:
    return block.id if block.id is not None else f"toolu_fake_{n}_{index}"


def _message_id(reply: Reply, n: int) -> str:
    return reply.message_id if reply.message_id is not None else f"msg_fake_{n}"


def _block_events(block: Block, index: int, n: int) -> tuple[JSON, list[JSON]]:
    """The content_block_start block and the deltas for one block."""
    if isinstance(block, TextBlock):
        start: JSON = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": t} for t in _split(block.text, block.chunks)]
    elif isinstance(block, ToolUseBlock):
        tool_id = _tool_id(block, n, index)
        start = {"type": "tool_use", "id": tool_id, "name": block.name, "input": {}}
        raw = orjson.dumps(block.input).decode()
        size = max(1, block.fragment_size)
        frags = [""] + [raw[i : i + size] for i in range(0, len(raw), size)]
        deltas = [{"type": "input_json_delta", "partial_json": f} for f in frags]
    else:
        start = {"type": "thinking", "thinking": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": t} for t in _split(block.thinking, block.chunks)
        ]
        deltas.append({"type": "signature_delta", "signature": block.signature})
    return start, deltas


def stream_events(reply: Reply, *, model: str, n: int) -> list[bytes]:
    """Every SSE event of a successful streamed reply, one bytes object per event, in order."""
    message: JSON = {
        "id": _message_id(reply, n),
        "type": "message",
        "role": "assistant",
        "model": reply.model or model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": reply.usage.start_usage(),
    }
    out = [sse_event("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(reply.blocks):
        start, deltas = _block_events(block, index, n)
        out.append(
            sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        if index == 0 and reply.pings:
            out.append(sse_event("ping", {"type": "ping"}))
        for delta in deltas:
            out.append(
                sse_event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        out.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": reply.stop_reason, "stop_sequence": None}
    out.append(
        sse_event(
            "message_delta",
            {"type": "message_delta", "delta": delta, "usage": reply.usage.delta_usage()},
        )
    )
    out.append(sse_event("message_stop", {"type": "message_stop"}))
    return out


def _final_block(block: Block, index: int, n: int) -> JSON:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUseBlock):
        tool_id = _tool_id(block, n, index)
        return {"type": "tool_use", "id": tool_id, "name": block.name, "input": block.input}
    return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}


def message_json(reply: Reply, *, model: str, n: int) -> JSON:
    """The non-streaming `Message` for a reply (blocks in final form)."""
    return {
        "id": _message_id(reply, n),
        "type": "message",
        "role": "assistant",
        "model": reply.model or model,
        "content": [_final_block(b, i, n) for i, b in enumerate(reply.blocks)],
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": reply.usage.final_usage(),
    }
