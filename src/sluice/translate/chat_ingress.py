"""OpenAI Chat Completions ingress: a Chat request → an Anthropic Messages body.

Pure: :func:`chat_to_messages` takes the parsed JSON of ``POST /v1/chat/completions`` and
returns the Anthropic body (orjson bytes) plus what the egress side needs to answer in kind.
The answer's way back is in :mod:`sluice.translate.chat_egress` (whole responses, errors) and
:mod:`sluice.translate.chat_egress_stream` (SSE).

Mapping (protocols.md §7, read backwards):

* ``system`` and ``developer`` messages → top-level ``system``, joined with blank lines
  wherever they stood in the conversation (Anthropic has no mid-conversation system turn).
* ``user`` content: a string or ``text`` / ``image_url`` (``data:`` URL → base64 source,
  http(s) → url source) / ``file`` (a PDF given as ``file_data``) parts. A ``cache_control``
  on a part (clients that know Claude send it) is kept; one on a whole message (opencode and
  the AI SDK put it there, on tool calls too) goes on the message's last block, and a cached
  system message makes ``system`` a list of text blocks.
* ``assistant``: text (and any earlier ``refusal`` text) then one ``tool_use`` per
  ``tool_calls`` entry, its ``arguments`` string parsed into ``input``.
* ``tool`` messages → ``tool_result`` blocks in a user turn. Consecutive turns of one role are
  merged (Anthropic needs alternation), with tool results first in a merged user turn.
* ``tools`` / ``tool_choice`` / ``parallel_tool_calls: false`` → ``tools`` with
  ``input_schema`` / ``tool_choice`` / ``disable_parallel_tool_use``.
* ``max_completion_tokens`` (else ``max_tokens``, else :data:`DEFAULT_MAX_TOKENS` = 4096,
  which every Claude model accepts; Anthropic requires a value, OpenAI does not), ``temperature``
  (0 to 1 only: Anthropic's range), ``top_p``, ``stop`` → ``stop_sequences``, ``safety_identifier``
  or ``user`` → ``metadata.user_id``, ``response_format`` json_schema →
  ``output_config.format``, ``stream``.

Anything that would change the answer and has no Anthropic equivalent (``n`` > 1, logprobs,
``logit_bias``, penalties, audio, ``json_object`` mode, ``reasoning_effort``, legacy
``functions``, unknown roles or part types, unknown top-level fields…) raises
:class:`TranslationError` naming the param. Only hints that do not change what the answer
says are left out on purpose: ``seed``, ``metadata`` and ``store: false`` (nothing is
stored), ``prompt_cache_key`` (Anthropic caches by prefix), ``service_tier`` auto/default,
``stream_options.include_obfuscation``, an image's ``detail`` and a message's ``name``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import orjson

from .openai_chat import TranslationError

__all__ = ["DEFAULT_MAX_TOKENS", "ChatRequest", "TranslationError", "chat_to_messages"]

DEFAULT_MAX_TOKENS: Final = 4096

_DATA_IMAGE = re.compile(r"data:(image/(?:png|jpeg|jpg|gif|webp));base64,(.*)", re.DOTALL)
_DATA_PDF = re.compile(r"data:application/pdf;base64,(.*)", re.DOTALL)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Accepted only with a value that asks for nothing beyond the default; None always passes.
# fmt: off
_NEUTRAL: Final[MappingProxyType[str, Callable[[Any], bool]]] = MappingProxyType({
    "n": lambda v: type(v) is int and v == 1,
    "logprobs": lambda v: v is False,
    "top_logprobs": lambda v: type(v) is int and v == 0,
    "logit_bias": lambda v: v == {},
    "presence_penalty": lambda v: _number(v) and v == 0,
    "frequency_penalty": lambda v: _number(v) and v == 0,
    "store": lambda v: v is False,
    "modalities": lambda v: v == ["text"],
    "service_tier": lambda v: v in ("auto", "default"),
    "audio": lambda v: False,
    "prediction": lambda v: False,
    "web_search_options": lambda v: False,
    "reasoning_effort": lambda v: False,
    "verbosity": lambda v: False,
    "functions": lambda v: False,
    "function_call": lambda v: False,
})
# fmt: on
_IGNORED: Final = frozenset({"seed", "metadata", "prompt_cache_key"})
_MAPPED: Final = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "stop", "tools", "tool_choice", "parallel_tool_calls", "user",
        "safety_identifier", "response_format",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A translated Chat Completions request.

    ``model`` is the model the client asked for (also set in ``messages_body``): the answer
    echoes it. ``include_usage`` is ``stream_options.include_usage`` and only matters when
    ``stream`` is true.
    """

    messages_body: bytes
    model: str
    stream: bool
    include_usage: bool


def _refuse(what: str, param: str) -> TranslationError:
    return TranslationError(f"{what} is not supported by this gateway", param=param)


def _obj(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TranslationError(f"`{param}` must be an object", param=param)
    return value


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise TranslationError(f"`{param}` must be an array", param=param)
    return value


def _str(value: Any, param: str, *, optional: bool = False) -> str:
    if optional and value is None:
        return ""
    if not isinstance(value, str):
        raise TranslationError(f"`{param}` must be a string", param=param)
    return value


def _show(value: Any) -> str:
    """A short rendering of a client's value for an error message."""
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        text = "(unencodable value)"
    return text if len(text) <= 80 else f"{text[:77]}..."


# ---------------------------------------------------------------- top level


def chat_to_messages(body: Any, *, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> ChatRequest:
    """Translate a Chat Completions request into an Anthropic Messages request.

    Raises :class:`TranslationError` (and nothing else, for any JSON value) when the request
    is malformed or asks for something Anthropic cannot do.
    """
    body = _obj(body, "body")
    _check_params(body)
    model = _str(body.get("model"), "model")
    if not model:
        raise TranslationError("`model` must not be empty", param="model")
    system, messages = _messages(body.get("messages"))
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body, default_max_tokens)}
    if system:
        out["system"] = system
    out["messages"] = messages
    out.update(_tool_fields(body))
    out.update(_sampling(body))
    users = [_str(body.get(key), key, optional=True) for key in ("safety_identifier", "user")]
    if any(users):
        out["metadata"] = {"user_id": next(u for u in users if u)}
    fmt = _response_format(body.get("response_format"))
    if fmt is not None:
        out["output_config"] = {"format": fmt}
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise TranslationError("`stream` must be a boolean", param="stream")
    if stream:
        out["stream"] = True
    try:
        encoded = orjson.dumps(out)
    except orjson.JSONEncodeError as exc:  # e.g. integers past 64 bits, nesting past 255
        raise TranslationError(f"request cannot be encoded: {exc}", param=None) from exc
    return ChatRequest(encoded, model, bool(stream), _include_usage(body))


def _check_params(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in _MAPPED or key in _IGNORED or value is None:
            continue
        neutral = _NEUTRAL.get(key)
        if neutral is None:
            raise TranslationError(f"Unrecognized request argument supplied: {key}", param=key)
        if not neutral(value):
            raise _refuse(f"`{key}` = {_show(value)}", key)


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    flag = _obj(options, "stream_options").get("include_usage")
    if flag is not None and not isinstance(flag, bool):
        raise TranslationError(
            "`stream_options.include_usage` must be a boolean", param="stream_options"
        )
    return bool(flag)


def _max_tokens(body: dict[str, Any], default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise TranslationError(f"`{key}` must be a positive integer", param=key)
        return value
    return default


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is None:
            continue
        if not _number(value) or not 0 <= value <= 1:
            # OpenAI allows temperature up to 2; Anthropic's scale stops at 1.
            raise TranslationError(f"`{key}` must be a number from 0 to 1", param=key)
        out[key] = value
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop
    if stops is not None:
        stops = [_str(s, "stop") for s in _list(stops, "stop")]
        if stops:
            out["stop_sequences"] = stops
    return out


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if fmt is None:
        return None
    kind = _obj(fmt, "response_format").get("type")
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = _obj(fmt.get("json_schema"), "response_format.json_schema")
        schema = _obj(spec.get("schema"), "response_format.json_schema.schema")
        return {"type": "json_schema", "schema": schema}
    # json_object asks for any JSON at all: Anthropic only constrains output to a schema.
    raise _refuse(f"response_format type {kind!r}", "response_format.type")


# ---------------------------------------------------------------- messages


def _messages(raw: Any) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    items = _list(raw, "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        message = _obj(item, where)
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
            raise _refuse("the legacy `function` role (use `tool`)", f"{where}.role")
        else:
            raise TranslationError(f"unknown message role {_show(role)}", param=f"{where}.role")
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
        block["cache_control"] = _obj(cache, f"{param}.cache_control")
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
    for i, part in enumerate(_list(content, param)):
        part = _obj(part, f"{param}[{i}]")
        if part.get("type") != "text":
            raise _refuse(f"content part type {part.get('type')!r} here", f"{param}[{i}].type")
        texts.append(_str(part.get("text"), f"{param}[{i}].text"))
    return sep.join(texts)


def _user_content(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for i, part in enumerate(_list(content, param)):
        block = _user_part(_obj(part, f"{param}[{i}]"), f"{param}[{i}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _user_part(part: dict[str, Any], param: str) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind == "text":
        text = _str(part.get("text"), f"{param}.text")
        block: dict[str, Any] | None = {"type": "text", "text": text} if text else None
    elif kind == "image_url":
        block = {"type": "image", "source": _image_source(part.get("image_url"), param)}
    elif kind == "file":
        block = _pdf(_obj(part.get("file"), f"{param}.file"), f"{param}.file")
    else:
        raise _refuse(f"content part type {kind!r}", f"{param}.type")
    cache = part.get("cache_control")
    if block is not None and cache is not None:
        block["cache_control"] = _obj(cache, f"{param}.cache_control")
    return block


def _image_source(image: Any, param: str) -> dict[str, Any]:
    where = f"{param}.image_url.url"
    url = image if isinstance(image, str) else _obj(image, f"{param}.image_url").get("url")
    url = _str(url, where)
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
        raise _refuse("`file_id` (uploaded files)", f"{param}.file_id")
    data = _str(file.get("file_data"), f"{param}.file_data")
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
        block["title"] = _str(filename, f"{param}.filename")
    return block


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    for key in ("function_call", "audio"):
        if message.get(key) is not None:
            raise _refuse(f"assistant `{key}`", f"{param}.{key}")
    content = message.get("content")
    if content is None or isinstance(content, str):
        texts = [content or ""]
    else:
        parts = enumerate(_list(content, f"{param}.content"))
        texts = [_assistant_part(part, f"{param}.content[{i}]") for i, part in parts]
    texts.append(_str(message.get("refusal"), f"{param}.refusal", optional=True))
    blocks = [{"type": "text", "text": text} for text in texts if text]
    calls = message.get("tool_calls")
    for i, call in enumerate([] if calls is None else _list(calls, f"{param}.tool_calls")):
        where = f"{param}.tool_calls[{i}]"
        blocks.append(_tool_use(_obj(call, where), where))
    return blocks


def _assistant_part(part: Any, param: str) -> str:
    part = _obj(part, param)
    kind = part.get("type")
    if kind not in ("text", "refusal"):
        raise _refuse(f"assistant content part type {kind!r}", f"{param}.type")
    return _str(part.get(kind), f"{param}.{kind}")


def _tool_use(call: dict[str, Any], param: str) -> dict[str, Any]:
    if call.get("type", "function") != "function":
        raise _refuse(f"tool call type {call.get('type')!r}", f"{param}.type")
    call_id = _str(call.get("id"), f"{param}.id")
    function = _obj(call.get("function"), f"{param}.function")
    name = _str(function.get("name"), f"{param}.function.name")
    where = f"{param}.function.arguments"
    arguments = _str(function.get("arguments"), where, optional=True)
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
    call_id = _str(message.get("tool_call_id"), f"{param}.tool_call_id")
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


# ---------------------------------------------------------------- tools


def _tool_fields(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("tools")
    tools = [] if raw is None else _list(raw, "tools")
    out: dict[str, Any] = {}
    if tools:
        out["tools"] = [_tool(_obj(t, f"tools[{i}]"), f"tools[{i}]") for i, t in enumerate(tools)]
    choice = _tool_choice(body.get("tool_choice"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise TranslationError(
            "`parallel_tool_calls` must be a boolean", param="parallel_tool_calls"
        )
    if not tools:
        # Without tools, only the choices that change nothing make sense.
        if choice is not None and choice["type"] not in ("auto", "none"):
            raise TranslationError("`tool_choice` needs `tools`", param="tool_choice")
        return out
    if parallel is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        out["tool_choice"] = choice
    return out


def _tool(tool: dict[str, Any], param: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise _refuse(f"tool type {tool.get('type')!r}", f"{param}.type")
    function = _obj(tool.get("function"), f"{param}.function")
    out: dict[str, Any] = {"name": _str(function.get("name"), f"{param}.function.name")}
    description = _str(function.get("description"), f"{param}.function.description", optional=True)
    if description:
        out["description"] = description
    schema = function.get("parameters")
    schema = {} if schema is None else _obj(schema, f"{param}.function.parameters")
    # OpenAI takes {} (or no parameters) for "no arguments"; Anthropic needs an object schema.
    out["input_schema"] = schema or {"type": "object", "properties": {}}
    strict = function.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise TranslationError("`strict` must be a boolean", param=f"{param}.function.strict")
        out["strict"] = strict
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    simple = {"auto": "auto", "none": "none", "required": "any"}
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = _obj(choice.get("function"), "tool_choice.function")
        return {"type": "tool", "name": _str(function.get("name"), "tool_choice.function.name")}
    raise _refuse(f"tool_choice {_show(choice)}", "tool_choice")
