"""OpenAI Chat Completions ingress: a Chat request → an Anthropic Messages body.

Pure: :func:`chat_to_messages` takes the parsed JSON of ``POST /v1/chat/completions`` and
returns the Anthropic body (orjson bytes) plus what the egress side needs to answer in kind.
The answer's way back is in :mod:`sluice.translate.chat_egress` (whole responses, errors) and
:mod:`sluice.translate.chat_egress_stream` (SSE). The conversation itself (``messages``) is
mapped in :mod:`sluice.translate.chat_ingress_messages`.

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

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import orjson

from .chat_ingress_messages import (
    as_array,
    as_object,
    as_string,
    refuse,
    show,
    translate_messages,
)
from .openai_chat import TranslationError

__all__ = ["DEFAULT_MAX_TOKENS", "ChatRequest", "TranslationError", "chat_to_messages"]

DEFAULT_MAX_TOKENS: Final = 4096


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


# ---------------------------------------------------------------- top level


def chat_to_messages(body: Any, *, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> ChatRequest:
    """Translate a Chat Completions request into an Anthropic Messages request.

    Raises :class:`TranslationError` (and nothing else, for any JSON value) when the request
    is malformed or asks for something Anthropic cannot do.
    """
    body = as_object(body, "body")
    _check_params(body)
    model = as_string(body.get("model"), "model")
    if not model:
        raise TranslationError("`model` must not be empty", param="model")
    system, messages = translate_messages(body.get("messages"))
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body, default_max_tokens)}
    if system:
        out["system"] = system
    out["messages"] = messages
    out.update(_tool_fields(body))
    out.update(_sampling(body))
    users = [as_string(body.get(key), key, optional=True) for key in ("safety_identifier", "user")]
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
            raise refuse(f"`{key}` = {show(value)}", key)


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    flag = as_object(options, "stream_options").get("include_usage")
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
        stops = [as_string(s, "stop") for s in as_array(stops, "stop")]
        if stops:
            out["stop_sequences"] = stops
    return out


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if fmt is None:
        return None
    kind = as_object(fmt, "response_format").get("type")
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = as_object(fmt.get("json_schema"), "response_format.json_schema")
        schema = as_object(spec.get("schema"), "response_format.json_schema.schema")
        return {"type": "json_schema", "schema": schema}
    # json_object asks for any JSON at all: Anthropic only constrains output to a schema.
    raise refuse(f"response_format type {kind!r}", "response_format.type")


# ---------------------------------------------------------------- tools


def _tool_fields(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("tools")
    tools = [] if raw is None else as_array(raw, "tools")
    out: dict[str, Any] = {}
    if tools:
        out["tools"] = [
            _tool(as_object(t, f"tools[{i}]"), f"tools[{i}]") for i, t in enumerate(tools)
        ]
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
        raise refuse(f"tool type {tool.get('type')!r}", f"{param}.type")
    function = as_object(tool.get("function"), f"{param}.function")
    out: dict[str, Any] = {"name": as_string(function.get("name"), f"{param}.function.name")}
    description = as_string(
        function.get("description"), f"{param}.function.description", optional=True
    )
    if description:
        out["description"] = description
    schema = function.get("parameters")
    schema = {} if schema is None else as_object(schema, f"{param}.function.parameters")
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
        function = as_object(choice.get("function"), "tool_choice.function")
        return {
            "type": "tool",
            "name": as_string(function.get("name"), "tool_choice.function.name"),
        }
    raise refuse(f"tool_choice {show(choice)}", "tool_choice")
