"""Anthropic answers → OpenAI Chat Completions shapes: whole responses and errors.

The way back for :mod:`sluice.translate.chat_ingress`. A ``Message`` becomes a
``chat.completion``: text blocks joined, ``tool_use`` blocks as ``tool_calls`` (arguments as
compact JSON), thinking and server-tool blocks left out (Chat has no place for them, and a
Chat client cannot ask for server tools). Usage follows OpenAI's convention, in which
``prompt_tokens`` include cached tokens.

Errors: Anthropic's ``{"type":"error","error":{"type","message"}}`` becomes OpenAI's
``{"error":{"message","type","param","code"}}``. The status is kept, except 529 (Anthropic's
"overloaded", which OpenAI clients do not know) which becomes 503; both are retried by the
``openai`` SDK. A "prompt is too long" error gets ``code: context_length_exceeded``, the code
OpenAI clients look for before trimming a conversation.
"""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Any, Final

import orjson

from .openai_chat import TranslationError
from .openai_response import (
    error_message,
    error_payload,
    error_type_for,
    finish_reason_for,
    usage_to_openai,
)

__all__ = [
    "anthropic_error_to_openai",
    "chat_completion_id",
    "message_to_chat_completion",
    "openai_error_body",
    "openai_error_for",
]

# Anthropic error.type → (OpenAI error type, code), after the strings OpenAI itself sends.
# fmt: off
_ERRORS: Final = MappingProxyType({
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "permission_error": ("permission_error", None),
    "not_found_error": ("invalid_request_error", "model_not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("rate_limit_error", "rate_limit_exceeded"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "timeout_error": ("timeout_error", "timeout"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
})
# fmt: on
_TOO_LONG: Final = "prompt is too long"


def chat_completion_id(message_id: Any) -> str:
    """``chatcmpl-<Anthropic message id>``, so a completion can be traced to its message."""
    if isinstance(message_id, str) and message_id:
        return f"chatcmpl-{message_id}"
    return f"chatcmpl-{uuid.uuid4().hex}"


def message_to_chat_completion(
    message: dict[str, Any], *, model: str, created: int
) -> dict[str, Any]:
    """Translate an Anthropic ``Message`` into an OpenAI ``chat.completion`` object.

    ``model`` is the model the client asked for; ``created`` is a Unix time in seconds.
    """
    if not isinstance(message, dict):
        raise TranslationError("the answer is not a message object", param=None)
    content = message.get("content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(_tool_call(block))
    text = "".join(texts)
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        reply["tool_calls"] = calls
    finish = finish_reason_for(message.get("stop_reason"), has_tool_calls=bool(calls))
    return {
        "id": chat_completion_id(message.get("id")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": reply, "finish_reason": finish, "logprobs": None}],
        "usage": usage_to_openai(message.get("usage")),
    }


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    name = block.get("name")
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {
        "id": str(block.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
        "type": "function",
        "function": {"name": name if isinstance(name, str) else "", "arguments": arguments},
    }


# ---------------------------------------------------------------- errors


def openai_error_body(
    message: str,
    *,
    type: str = "invalid_request_error",  # OpenAI's field name
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def openai_error_for(error_type: Any, message: str, *, param: str | None = None) -> dict[str, Any]:
    """An OpenAI error body for an Anthropic ``error.type`` (an open set of strings)."""
    mapped = _ERRORS.get(error_type) if isinstance(error_type, str) else None
    kind, code = mapped or ("server_error", None)
    if _TOO_LONG in message.lower() and kind == "invalid_request_error":
        code = "context_length_exceeded"
    return openai_error_body(message, type=kind, param=param, code=code)


def anthropic_error_to_openai(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """Map an Anthropic-shaped error response to (status, OpenAI error body)."""
    payload, fallback = error_payload(status, body)
    message, error_type, _ = error_message(payload, fallback)
    if error_type not in _ERRORS:
        error_type = error_type_for(status)
    # The gateway's own refusals name the parameter they refuse (OpenAI clients show it).
    error = payload.get("error") if isinstance(payload, dict) else None
    param = error.get("param") if isinstance(error, dict) else None
    body_out = openai_error_for(
        error_type, message, param=param if isinstance(param, str) else None
    )
    return (503 if status == 529 else status), body_out
