"""OpenAI Chat Completions → Anthropic Messages: whole responses, usage, stop reasons and
errors (and the mappings the Chat Completions door uses the other way).

Pure functions over parsed JSON; the request direction is ``openai_chat``.
"""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Any

import orjson

from .openai_chat import TranslationError

# fmt: off
_STOP_REASONS = MappingProxyType({
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
    "function_call": "tool_use", "content_filter": "refusal",
})
# The other way (Chat Completions ingress). pause_turn only follows server tools, which a
# Chat client cannot ask for; it ends the turn like end_turn.
_FINISH_REASONS = MappingProxyType({
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls",
    "refusal": "content_filter",
})
_ERROR_TYPES = MappingProxyType({
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 408: "timeout_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
})
# OpenAI error `code`/`type` strings, for stream error chunks that carry no HTTP status;
# strings that already are Anthropic types pass through.
_ERROR_CODES = MappingProxyType({
    "context_length_exceeded": "invalid_request_error", "invalid_api_key": "authentication_error",
    "model_not_found": "not_found_error", "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "billing_error", "server_error": "api_error",
    "overloaded": "overloaded_error", "timeout": "timeout_error",
})
# fmt: on
_ANTHROPIC_TYPES = frozenset(_ERROR_TYPES.values())


# ---------------------------------------------------------------- response


def stop_reason_for(finish_reason: str | None, *, has_tool_calls: bool) -> str:
    """Map ``finish_reason`` so it agrees with the blocks actually sent.

    Some OpenAI-compatible servers say "stop" after tool calls, or "tool_calls" with none;
    a client must never be told to run tools that are not there, so the blocks decide.
    """
    reason = _STOP_REASONS.get(finish_reason or "stop", "end_turn")
    if reason in ("end_turn", "tool_use"):
        return "tool_use" if has_tool_calls else "end_turn"
    return reason


def usage_from_openai(usage: dict[str, Any] | None) -> dict[str, int]:
    """OpenAI's prompt_tokens include cached tokens; Anthropic's input_tokens exclude them."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    prompt = int(usage.get("prompt_tokens") or 0)
    return {
        "input_tokens": max(prompt - cached - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def finish_reason_for(stop_reason: Any, *, has_tool_calls: bool) -> str:
    """Anthropic ``stop_reason`` → OpenAI ``finish_reason``, agreeing with the calls sent.

    "tool_calls" tells a client to run tools, so it is only said when there are some.
    """
    reason = _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason in ("stop", "tool_calls"):
        return "tool_calls" if has_tool_calls else "stop"
    return reason


def token_count(value: Any) -> int | None:
    """A usage count, or None for anything that is not one (sums must stay in 64 bits)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    return None


def _count(usage: dict[str, Any], key: str) -> int:
    return token_count(usage.get(key)) or 0


def usage_to_openai(usage: Any) -> dict[str, Any]:
    """Anthropic usage → OpenAI ``CompletionUsage``: the inverse of :func:`usage_from_openai`.

    OpenAI's prompt_tokens include cached tokens, read and written alike.
    """
    usage = usage if isinstance(usage, dict) else {}
    read = _count(usage, "cache_read_input_tokens")
    written = _count(usage, "cache_creation_input_tokens")
    prompt = _count(usage, "input_tokens") + read + written
    completion = _count(usage, "output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
    }


def parse_arguments(arguments: str | None, param: str) -> dict[str, Any]:
    """Tool-call arguments arrive as a JSON string; Anthropic needs an object."""
    if not arguments or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise TranslationError(
            f"upstream returned tool arguments that are not valid JSON: {exc}", param=param
        ) from exc
    if not isinstance(value, dict):
        raise TranslationError(
            "upstream returned tool arguments that are not an object", param=param
        )
    return value


def openai_to_anthropic_message(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Translate a non-streaming ChatCompletion into an Anthropic ``Message``."""
    choices = resp.get("choices") or []
    if not choices:
        raise TranslationError("upstream returned no choices", param="choices")
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content") or ""
    if isinstance(text, list):  # a few compatible servers answer with content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    text += message.get("refusal") or ""
    if text:
        content.append({"type": "text", "text": text})
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):  # legacy single-call shape
        calls.append({"id": None, "function": message["function_call"]})
    for i, call in enumerate(calls):
        function = call.get("function") or {}
        where = f"choices[0].message.tool_calls[{i}].function.arguments"
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name", ""),
                "input": parse_arguments(function.get("arguments"), where),
            }
        )
    stop_reason = stop_reason_for(choice.get("finish_reason"), has_tool_calls=bool(calls))
    if message.get("refusal") and stop_reason == "end_turn":
        stop_reason = "refusal"
    return {
        "id": f"msg_{resp.get('id') or uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage_from_openai(resp.get("usage")),
    }


# ---------------------------------------------------------------- errors


def error_type_for(status: int | None, upstream_type: Any = None, code: Any = None) -> str:
    """Anthropic ``error.type`` from an HTTP status, else from OpenAI's type/code strings."""
    if status is not None:
        if status in _ERROR_TYPES:
            return _ERROR_TYPES[status]
        return "api_error" if status >= 500 else "invalid_request_error"
    for key in (code, upstream_type):
        if isinstance(key, str) and key in _ANTHROPIC_TYPES:
            return key
        if isinstance(key, str) and key in _ERROR_CODES:
            return _ERROR_CODES[key]
        if isinstance(key, int) and key in _ERROR_TYPES:
            return _ERROR_TYPES[key]
    return "api_error"


def anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def error_message(payload: Any, fallback: str) -> tuple[str, Any, Any]:
    """(message, type, code) from the many shapes OpenAI-compatible servers use."""
    if not isinstance(payload, dict):
        return fallback, None, None
    error = payload.get("error", payload)
    if isinstance(error, str):
        return error, None, None
    if not isinstance(error, dict):
        return fallback, None, None
    message = error.get("message") or error.get("detail") or fallback
    if not isinstance(message, str):
        message = orjson.dumps(message).decode()
    return message, error.get("type"), error.get("code")


def error_payload(status: int, body: bytes) -> tuple[Any, str]:
    """(the parsed error body or None, a fallback message) of an error response, in either
    API's shape."""
    fallback = f"upstream returned HTTP {status}"
    try:
        return (orjson.loads(body) if body else None), fallback
    except orjson.JSONDecodeError:
        # An HTML page from a proxy says little; keep a short prefix for the operator.
        text = body.decode("utf-8", "replace").strip()
        return None, f"{fallback}: {text[:200]}" if text else fallback


def openai_error_to_anthropic(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """Map an OpenAI-style error response to (status, Anthropic error body)."""
    payload, fallback = error_payload(status, body)
    message, upstream_type, code = error_message(payload, fallback)
    if code == "context_length_exceeded" and "prompt is too long" not in message:
        # Claude Code looks for this phrase to compact the conversation and retry.
        message = f"prompt is too long: {message}"
    return status, anthropic_error(error_type_for(status, upstream_type, code), message)
