"""Anthropic Messages ⇄ OpenAI Chat Completions: requests, whole responses and errors.

Pure functions over parsed JSON. Anything Anthropic-only that cannot be expressed for an
OpenAI upstream raises :class:`TranslationError` (the gateway answers 400) instead of being
dropped quietly; only hints with no effect on the answer (cache breakpoints, thinking and
effort settings, ``top_k``) are left out.
"""

from __future__ import annotations

import hashlib
import uuid
from types import MappingProxyType
from typing import Any

import orjson

BILLING_PREFIX = "x-anthropic-billing-header:"

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


class TranslationError(ValueError):
    """The request uses something the OpenAI side cannot express; ``param`` names where."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _unsupported(what: str, param: str) -> TranslationError:
    return TranslationError(f"{what} is not supported by OpenAI upstreams", param=param)


# ---------------------------------------------------------------- request


def anthropic_to_openai(
    body: dict[str, Any],
    *,
    model: str,
    strip_billing_header: bool = True,
    drop_signed_thinking: bool = False,
) -> dict[str, Any]:
    """Translate a Messages request body into a Chat Completions request body.

    ``drop_signed_thinking`` lets a caller that knows the conversation will stay on OpenAI
    discard signed thinking from an earlier Anthropic turn instead of refusing the request.
    """
    for key in ("mcp_servers", "container"):
        if body.get(key):
            raise _unsupported(f"`{key}`", key)

    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"), "system", strip_billing_header)
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(body.get("messages") or []):
        messages.extend(_message(message, f"messages[{i}]", drop_signed_thinking))

    out: dict[str, Any] = {"model": model, "messages": messages}
    tools = [_tool(t, f"tools[{i}]") for i, t in enumerate(body.get("tools") or [])]
    # OpenAI rejects tool_choice / parallel_tool_calls when no tools are sent.
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        if choice:
            out["tool_choice"] = _tool_choice(choice)
            if choice.get("disable_parallel_tool_use"):
                out["parallel_tool_calls"] = False
    if body.get("max_tokens") is not None:
        out["max_completion_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    user = _user_id(body.get("metadata"))
    if user:
        out["user"] = user
    fmt = (body.get("output_config") or {}).get("format")
    if fmt:
        out["response_format"] = _response_format(fmt)
    return out


def _system_text(system: Any, param: str, strip_billing: bool) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        blocks: list[Any] = [{"type": "text", "text": system}]
    else:
        blocks = list(system)
    texts: list[str] = []
    for i, block in enumerate(blocks):
        if block.get("type") != "text":
            raise _unsupported(f"system block type {block.get('type')!r}", f"{param}[{i}]")
        text: str = block.get("text", "")
        if strip_billing and text.startswith(BILLING_PREFIX):
            # The line's hash changes on every request and would defeat the prefix cache.
            text = text.partition("\n")[2]
        if text:
            texts.append(text)
    return "\n\n".join(texts)


def _message(message: dict[str, Any], param: str, drop_signed: bool) -> list[dict[str, Any]]:
    role = message.get("role")
    content = message.get("content")
    if role == "system":
        text = _system_text(content, f"{param}.content", strip_billing=False)
        return [{"role": "system", "content": text}]
    if role == "user":
        if isinstance(content, str):
            return [{"role": "user", "content": content}]
        return _user_blocks(content or [], f"{param}.content")
    if role == "assistant":
        if isinstance(content, str):
            return [{"role": "assistant", "content": content}]
        return _assistant_blocks(content or [], f"{param}.content", drop_signed)
    raise TranslationError(f"unknown message role {role!r}", param=f"{param}.role")


def _user_blocks(blocks: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    # Tool messages must follow the assistant's tool_calls directly, so they go first.
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        where = f"{param}[{i}]"
        if block.get("type") == "tool_result":
            text, attachments = _tool_result(block, where)
            tool_messages.append(
                {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}
            )
            if attachments:
                # Tool messages carry text only; images travel in the following user turn.
                note = f"Attachments of tool result {block['tool_use_id']}:"
                parts.extend([{"type": "text", "text": note}, *attachments])
        else:
            parts.append(_content_part(block, where))
    out = tool_messages
    if parts:
        if len(parts) == 1 and parts[0]["type"] == "text":
            out.append({"role": "user", "content": parts[0]["text"]})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _tool_result(block: dict[str, Any], param: str) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    texts: list[str] = []
    attachments: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    else:
        for i, item in enumerate(content or []):
            part = _content_part(item, f"{param}.content[{i}]")
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                attachments.append(part)
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"
    return text, attachments


def _content_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")}
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url":
            url = source["url"]
        else:
            raise _unsupported(f"image source {source.get('type')!r}", f"{param}.source")
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "document":
        return _document(block, param)
    raise _unsupported(f"content block type {kind!r}", param)


def _document(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64" and source.get("media_type") == "application/pdf":
        filename = block.get("title") or "document.pdf"
        data = f"data:application/pdf;base64,{source.get('data')}"
        return {"type": "file", "file": {"filename": filename, "file_data": data}}
    if kind == "text":
        return {"type": "text", "text": source.get("data", "")}
    if kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            return {"type": "text", "text": inner}
        texts = []
        for i, item in enumerate(inner or []):
            if item.get("type") != "text":
                raise _unsupported("non-text document content", f"{param}.source.content[{i}]")
            texts.append(item.get("text", ""))
        return {"type": "text", "text": "\n".join(texts)}
    what = f"document source {kind!r} ({source.get('media_type')})"
    raise _unsupported(what, f"{param}.source")


def _assistant_blocks(
    blocks: list[dict[str, Any]], param: str, drop_signed: bool
) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": block["name"], "arguments": arguments}
            calls.append({"id": block["id"], "type": "function", "function": function})
        elif kind == "thinking":
            if block.get("signature") and not drop_signed:
                raise TranslationError(
                    "signed thinking blocks from an Anthropic turn cannot be sent to an "
                    "OpenAI upstream; keep the conversation on one provider",
                    param=f"{param}[{i}]",
                )
        elif kind != "redacted_thinking":  # opaque to anyone but Anthropic
            raise _unsupported(f"assistant block type {kind!r}", f"{param}[{i}]")
    text = "\n\n".join(t for t in texts if t)
    if not text and not calls:
        return []
    out: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        out["tool_calls"] = calls
    return [out]


def _tool(tool: dict[str, Any], param: str) -> dict[str, Any]:
    kind = tool.get("type")
    if kind not in (None, "custom"):
        # Server tools run inside Anthropic; client ones (bash_*, text_editor_*) have no schema.
        raise _unsupported(f"Anthropic-defined tool {kind!r} ({tool.get('name')})", f"{param}.type")
    function: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> Any:
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice["name"]}}
    raise TranslationError(f"unknown tool_choice type {kind!r}", param="tool_choice.type")


def _user_id(metadata: Any) -> str | None:
    user_id = (metadata or {}).get("user_id")
    if not isinstance(user_id, str) or not user_id:
        return None
    if not user_id.startswith("{"):
        return user_id
    # Claude Code sends a JSON object (device, account, session): pass a stable short id.
    try:
        parsed = orjson.loads(user_id)
    except orjson.JSONDecodeError:
        parsed = None
    session = parsed.get("session_id") if isinstance(parsed, dict) else None
    if isinstance(session, str) and session:
        return session
    return hashlib.sha256(user_id.encode()).hexdigest()


def _response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt.get("type") != "json_schema":
        raise _unsupported(f"output format {fmt.get('type')!r}", "output_config.format.type")
    schema = {"name": "output", "schema": fmt.get("schema") or {}, "strict": True}
    return {"type": "json_schema", "json_schema": schema}


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
