"""Anthropic Messages → OpenAI Chat Completions: the request (answers and errors come back
through ``openai_response``).

Pure functions over parsed JSON. Anything Anthropic-only that cannot be expressed for an
OpenAI upstream raises :class:`TranslationError` (the gateway answers 400) instead of being
dropped quietly; only hints with no effect on the answer (cache breakpoints, thinking and
effort settings, ``top_k``) are left out.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

BILLING_PREFIX = "x-anthropic-billing-header:"


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
