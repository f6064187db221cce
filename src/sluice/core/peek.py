"""Peek the few fields the pipeline needs from the request body, without a full parse.

A Claude Code body is 76-125 KB, mostly tool schemas and history. A full ``orjson.loads``
builds every object in it (and feeds the garbage collector) on every request; msgspec decodes
just ``model``, ``stream``, ``max_tokens`` and ``metadata``, validates the rest as JSON and
skips it. The full parse happens only when a key's policy needs it (``ctx.parsed_body()``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from sluice.core.context import RequestContext
from sluice.errors import InvalidRequest


class _Peek(msgspec.Struct):
    model: Any = None
    messages: msgspec.Raw = msgspec.Raw()  # kept as raw bytes: validated, never built
    stream: Any = None
    max_tokens: Any = None
    metadata: Any = None
    mcp_servers: msgspec.Raw = msgspec.Raw()  # rare; kept raw, parsed only when present


_DECODER = msgspec.json.Decoder(_Peek)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


def last_message(ctx: RequestContext) -> Any:
    """The last message, parsed alone: the rest of the history stays raw bytes."""
    if ctx.messages_raw is None:
        return None
    items = _RAW_LIST.decode(ctx.messages_raw)
    return orjson.loads(memoryview(items[-1])) if items else None


def _session_from_metadata(metadata: Any) -> str | None:
    """Claude Code puts a JSON string in ``metadata.user_id`` that carries ``session_id``."""
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id.startswith("{"):
        return None
    try:
        decoded = orjson.loads(user_id)
    except orjson.JSONDecodeError:
        return None
    session = decoded.get("session_id") if isinstance(decoded, dict) else None
    return session if isinstance(session, str) and session else None


def peek_messages_body(ctx: RequestContext) -> None:
    """Validate the minimum (a JSON object with ``model`` and ``messages``) and fill ``ctx``.

    Everything else is the upstream's to judge: unknown fields pass through untouched.
    """
    try:
        peek = _DECODER.decode(ctx.body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest("The request body must be a JSON object.") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc}",
            tips=["Send a JSON object with `model`, `max_tokens` and `messages`."],
        ) from exc
    model = peek.model
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model`: field required (a model name string).", param="model")
    if bytes(memoryview(peek.messages)[:1]) != b"[":
        raise InvalidRequest("`messages`: field required (an array of messages).", param="messages")
    ctx.messages_raw = peek.messages
    ctx.mcp_servers_raw = peek.mcp_servers if len(memoryview(peek.mcp_servers)) else None
    ctx.model_requested = model
    ctx.model_sent = model
    ctx.stream = peek.stream is True
    ctx.max_tokens = peek.max_tokens if isinstance(peek.max_tokens, int) else None
    header_session = ctx.header(b"x-claude-code-session-id")
    ctx.session_id = (
        header_session.decode("latin-1")
        if header_session
        else _session_from_metadata(peek.metadata)
    )
