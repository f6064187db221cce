"""OpenAI Chat Completions ingress, the conversation: Chat ``messages`` → Anthropic ``system``
and ``messages`` (the mapping is in ``chat_ingress``'s docstring), and the value checks both
halves use. Pure.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .openai_chat import TranslationError

_DATA_IMAGE = re.compile(r"data:(image/(?:png|jpeg|jpg|gif|webp));base64,(.*)", re.DOTALL)
_DATA_PDF = re.compile(r"data:application/pdf;base64,(.*)", re.DOTALL)


def refuse(what: str, param: str) -> TranslationError:
    return TranslationError(f"{what} is not supported by this gateway", param=param)


def as_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TranslationError(f"`{param}` must be an object", param=param)
    return value


def as_array(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise TranslationError(f"`{param}` must be an array", param=param)
    return value


def as_string(value: Any, param: str, *, optional: bool = False) -> str:
    if optional and value is None:
        return ""
    if not isinstance(value, str):
        raise TranslationError(f"`{param}` must be a string", param=param)
    return value


def show(value: Any) -> str:
    """A short rendering of a client's value for an error message."""
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        text = "(unencodable value)"
    return text if len(text) <= 80 else f"{text[:77]}..."


# ---------------------------------------------------------------- messages


def translate_messages(raw: Any) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    items = as_array(raw, "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        message = as_object(item, where)
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_only(message.get("content"), f"{where}.content", "\n\n")
            if text:
                system.append(_cached({"type": "text", "text": text}, message, where))
            continue
        if role == "user":
            blocks = _user_content(message.get("content"), f"{where}.content")
            _append_turn(turns, "user", _cached_last(blocks, message, where))
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
            _append_turn(turns, "assistant", _cached_last(blocks, message, where))
        elif role == "tool":
            _append_turn(turns, "user", [_cached(_tool_result(message, where), message, where)])
        elif role == "function":
            raise refuse("the legacy `function` role (use `tool`)", f"{where}.role")
        else:
            raise TranslationError(f"unknown message role {show(role)}", param=f"{where}.role")
    if not turns:
        raise TranslationError(
            "`messages` must hold at least one user or assistant message", param="messages"
        )
    for turn in turns:
        if turn["role"] == "user":  # Anthropic wants a user turn's tool results first
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if any("cache_control" in block for block in system):
        return system, turns  # blocks: a cache breakpoint needs one to sit on
    return "\n\n".join(block["text"] for block in system), turns


def _cached(block: dict[str, Any], holder: dict[str, Any], param: str) -> dict[str, Any]:
    """A message's (or tool call's) own ``cache_control`` onto the block made from it: clients
    built for Claude (opencode, the AI SDK) mark whole messages as cache breakpoints."""
    cache = holder.get("cache_control")
    if cache is not None:
        block["cache_control"] = as_object(cache, f"{param}.cache_control")
    return block


def _cached_last(
    blocks: list[dict[str, Any]], message: dict[str, Any], param: str
) -> list[dict[str, Any]]:
    """A message-level breakpoint covers the whole message: it sits on its last block."""
    if blocks:
        _cached(blocks[-1], message, param)
    return blocks


def _append_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return  # an empty message says nothing; Anthropic would reject it
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _text_only(content: Any, param: str, sep: str) -> str:
    """A string, or text parts joined: where only text makes sense."""
    if isinstance(content, str):
        return content
    texts = []
    for i, part in enumerate(as_array(content, param)):
        part = as_object(part, f"{param}[{i}]")
        if part.get("type") != "text":
            raise refuse(f"content part type {part.get('type')!r} here", f"{param}[{i}].type")
        texts.append(as_string(part.get("text"), f"{param}[{i}].text"))
    return sep.join(texts)


def _user_content(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for i, part in enumerate(as_array(content, param)):
        block = _user_part(as_object(part, f"{param}[{i}]"), f"{param}[{i}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _user_part(part: dict[str, Any], param: str) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind == "text":
        text = as_string(part.get("text"), f"{param}.text")
        block: dict[str, Any] | None = {"type": "text", "text": text} if text else None
    elif kind == "image_url":
        block = {"type": "image", "source": _image_source(part.get("image_url"), param)}
    elif kind == "file":
        block = _pdf(as_object(part.get("file"), f"{param}.file"), f"{param}.file")
    else:
        raise refuse(f"content part type {kind!r}", f"{param}.type")
    cache = part.get("cache_control")
    if block is not None and cache is not None:
        block["cache_control"] = as_object(cache, f"{param}.cache_control")
    return block


def _image_source(image: Any, param: str) -> dict[str, Any]:
    where = f"{param}.image_url.url"
    url = image if isinstance(image, str) else as_object(image, f"{param}.image_url").get("url")
    url = as_string(url, where)
    if url.startswith("data:"):
        match = _DATA_IMAGE.fullmatch(url)
        if match is None:
            msg = "image data URLs must be base64 PNG, JPEG, GIF or WebP"
            raise TranslationError(msg, param=where)
        media_type = match[1].replace("/jpg", "/jpeg")
        return {"type": "base64", "media_type": media_type, "data": match[2]}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise TranslationError("image URLs must be http(s) or data: URLs", param=where)


def _pdf(file: dict[str, Any], param: str) -> dict[str, Any]:
    if file.get("file_id") is not None:
        raise refuse("`file_id` (uploaded files)", f"{param}.file_id")
    data = as_string(file.get("file_data"), f"{param}.file_data")
    match = _DATA_PDF.fullmatch(data)
    if match is None:
        msg = "`file_data` must be a data:application/pdf;base64 URL"
        raise TranslationError(msg, param=f"{param}.file_data")
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": match[1]},
    }
    filename = file.get("filename")
    if filename:
        block["title"] = as_string(filename, f"{param}.filename")
    return block


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    for key in ("function_call", "audio"):
        if message.get(key) is not None:
            raise refuse(f"assistant `{key}`", f"{param}.{key}")
    content = message.get("content")
    if content is None or isinstance(content, str):
        texts = [content or ""]
    else:
        parts = enumerate(as_array(content, f"{param}.content"))
        texts = [_assistant_part(part, f"{param}.content[{i}]") for i, part in parts]
    texts.append(as_string(message.get("refusal"), f"{param}.refusal", optional=True))
    blocks = [{"type": "text", "text": text} for text in texts if text]
    calls = message.get("tool_calls")
    for i, call in enumerate([] if calls is None else as_array(calls, f"{param}.tool_calls")):
        where = f"{param}.tool_calls[{i}]"
        blocks.append(_tool_use(as_object(call, where), where))
    return blocks


def _assistant_part(part: Any, param: str) -> str:
    part = as_object(part, param)
    kind = part.get("type")
    if kind not in ("text", "refusal"):
        raise refuse(f"assistant content part type {kind!r}", f"{param}.type")
    return as_string(part.get(kind), f"{param}.{kind}")


def _tool_use(call: dict[str, Any], param: str) -> dict[str, Any]:
    if call.get("type", "function") != "function":
        raise refuse(f"tool call type {call.get('type')!r}", f"{param}.type")
    call_id = as_string(call.get("id"), f"{param}.id")
    function = as_object(call.get("function"), f"{param}.function")
    name = as_string(function.get("name"), f"{param}.function.name")
    where = f"{param}.function.arguments"
    arguments = as_string(function.get("arguments"), where, optional=True)
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise TranslationError(
            f"tool call arguments are not valid JSON: {exc}", param=where
        ) from exc
    if not isinstance(value, dict):
        raise TranslationError("tool call arguments must be a JSON object", param=where)
    return _cached({"type": "tool_use", "id": call_id, "name": name, "input": value}, call, param)


def _tool_result(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = as_string(message.get("tool_call_id"), f"{param}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        texts = _text_only(content, f"{param}.content", "\n")
        if texts:
            block["content"] = texts
    return block
