"""Peek the few fields the pipeline needs from a parsed copy of the request body."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.core.context import RequestContext
from sluice.errors import InvalidRequest


def _session_from_metadata(body: dict[str, Any]) -> str | None:
    """Claude Code puts a JSON string in ``metadata.user_id`` that carries ``session_id``."""
    metadata = body.get("metadata")
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
    """Validate the minimum (JSON object with ``model`` and ``messages``) and fill ``ctx``.

    Everything else is the upstream's to judge: unknown fields pass through untouched.
    """
    try:
        body = orjson.loads(ctx.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc}",
            tips=["Send a JSON object with `model`, `max_tokens` and `messages`."],
        ) from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model`: field required (a model name string).", param="model")
    if not isinstance(body.get("messages"), list):
        raise InvalidRequest("`messages`: field required (an array of messages).", param="messages")
    ctx.parsed = body
    ctx.model_requested = model
    ctx.model_sent = model
    ctx.stream = body.get("stream") is True
    max_tokens = body.get("max_tokens")
    ctx.max_tokens = max_tokens if isinstance(max_tokens, int) else None
    header_session = ctx.header(b"x-claude-code-session-id")
    ctx.session_id = (
        header_session.decode("latin-1") if header_session else _session_from_metadata(body)
    )
