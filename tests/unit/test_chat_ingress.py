"""Chat Completions ingress: OpenAI requests → Anthropic bodies, Messages → chat.completion.

Inputs are checked against the openai SDK's request TypedDicts (so they are requests a real
client could send) and outputs against the anthropic SDK's request types and the openai SDK's
``ChatCompletion`` model and exception classes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import orjson
import pydantic
import pytest
from anthropic.types import message_create_params as an_params
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.chat import completion_create_params as oa_params

from sluice.translate.chat_egress import (
    anthropic_error_to_openai,
    message_to_chat_completion,
    openai_error_body,
    openai_error_for,
)
from sluice.translate.chat_ingress import (
    DEFAULT_MAX_TOKENS,
    ChatRequest,
    TranslationError,
    chat_to_messages,
)


def materialize(value: Any) -> Any:
    """Pydantic validates the SDKs' Iterable[...] fields lazily; iterating runs the checks."""
    if isinstance(value, Iterator):
        return [materialize(v) for v in value]
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [materialize(v) for v in value]
    return value


OA_STREAMING = pydantic.TypeAdapter(oa_params.CompletionCreateParamsStreaming)
OA_NON_STREAMING = pydantic.TypeAdapter(oa_params.CompletionCreateParamsNonStreaming)
AN_STREAMING = pydantic.TypeAdapter(an_params.MessageCreateParamsStreaming)
AN_NON_STREAMING = pydantic.TypeAdapter(an_params.MessageCreateParamsNonStreaming)


def translate(**body: Any) -> dict[str, Any]:
    """Check `body` is a valid OpenAI request, translate it and check the Anthropic body."""
    body.setdefault("model", "claude-sonnet-4-5")
    materialize((OA_STREAMING if body.get("stream") else OA_NON_STREAMING).validate_python(body))
    request = chat_to_messages(body)
    out: dict[str, Any] = orjson.loads(request.messages_body)
    materialize((AN_STREAMING if out.get("stream") else AN_NON_STREAMING).validate_python(out))
    assert request.model == out["model"] == body["model"]
    assert request.stream is bool(body.get("stream"))
    return out


def refused(body: Any) -> TranslationError:
    with pytest.raises(TranslationError) as err:
        chat_to_messages(body)
    return err.value


USER: ChatCompletionMessageParam = {"role": "user", "content": "hi"}
PNG = "iVBORw0KGgo="


# ---------------------------------------------------------------- requests


def test_minimal_request_and_defaults() -> None:
    request = chat_to_messages({"model": "m", "messages": [USER]})
    assert request == ChatRequest(request.messages_body, "m", False, False)
    assert orjson.loads(request.messages_body) == {
        "model": "m",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    custom = chat_to_messages({"model": "m", "messages": [USER]}, default_max_tokens=99)
    assert orjson.loads(custom.messages_body)["max_tokens"] == 99


def test_system_and_developer_messages_become_top_level_system() -> None:
    out = translate(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "use tools"}]},
            USER,
            {"role": "system", "content": "late rule"},
        ]
    )
    assert out["system"] == "be brief\n\nuse tools\n\nlate rule"
    assert [m["role"] for m in out["messages"]] == ["user"]


def test_user_parts_images_and_pdf() -> None:
    content: list[Any] = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}},
        {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        },
        {"type": "text", "text": ""},  # empty text parts are left out: Anthropic refuses them
    ]
    out = translate(messages=[{"role": "user", "content": content}])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
            "title": "a.pdf",
        },
    ]


def test_cache_control_on_parts_is_kept() -> None:
    part = {"type": "text", "text": "big doc", "cache_control": {"type": "ephemeral"}}
    out = chat_to_messages({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    (block,) = orjson.loads(out.messages_body)["messages"][0]["content"]
    assert block == part


CALL_A = {
    "id": "call_a",
    "type": "function",
    "function": {"name": "read", "arguments": '{"p":"x"}'},
}
CALL_B = {"id": "call_b", "type": "function", "function": {"name": "ls", "arguments": ""}}


def test_tool_loop_assistant_calls_and_merged_tool_results() -> None:
    out = translate(
        messages=[
            USER,
            {"role": "assistant", "content": "Reading.", "tool_calls": [CALL_A, CALL_B]},
            {"role": "tool", "tool_call_id": "call_a", "content": "file text"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "a"}]},
            {"role": "user", "content": "thanks"},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ]
    )
    user, assistant, results, reply = out["messages"]
    assert user["role"] == "user" and reply["role"] == "assistant"
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "call_a", "name": "read", "input": {"p": "x"}},
            {"type": "tool_use", "id": "call_b", "name": "ls", "input": {}},
        ],
    }
    # Both tool messages and the next user message form one user turn, results first.
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_a", "content": "file text"},
            {"type": "tool_result", "tool_use_id": "call_b", "content": "a"},
            {"type": "text", "text": "thanks"},
        ],
    }


def test_same_role_turns_merge_and_results_go_first() -> None:
    out = translate(
        messages=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": None, "tool_calls": [CALL_A]},
            {"role": "assistant", "content": "", "refusal": "I won't."},
            {"role": "user", "content": "stray text first"},
            {"role": "tool", "tool_call_id": "call_a", "content": ""},
        ]
    )
    first, second, third = out["messages"]
    assert [b["text"] for b in first["content"]] == ["one", "two"]
    assert [b["type"] for b in second["content"]] == ["tool_use", "text"]
    assert second["content"][1]["text"] == "I won't."
    assert third["content"] == [
        {"type": "tool_result", "tool_use_id": "call_a"},
        {"type": "text", "text": "stray text first"},
    ]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_bad_tool_call_arguments_are_refused(arguments: str, fragment: str) -> None:
    call = {**CALL_A, "function": {"name": "read", "arguments": arguments}}
    err = refused({"model": "m", "messages": [{"role": "assistant", "tool_calls": [call]}]})
    assert fragment in err.message
    assert err.param == "messages[0].tool_calls[0].function.arguments"


FUNCTION = {
    "type": "function",
    "function": {
        "name": "read",
        "description": "Read a file",
        "parameters": {"type": "object", "properties": {"p": {"type": "string"}}},
        "strict": True,
    },
}
BARE = {"type": "function", "function": {"name": "now"}}


def test_tools_map_to_input_schema() -> None:
    out = translate(messages=[USER], tools=[FUNCTION, BARE])
    assert out["tools"] == [
        {
            "name": "read",
            "description": "Read a file",
            "input_schema": {"type": "object", "properties": {"p": {"type": "string"}}},
            "strict": True,
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in out


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "read"}},
            None,
            {"type": "tool", "name": "read"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "read"}},
            False,
            {"type": "tool", "name": "read", "disable_parallel_tool_use": True},
        ),
        ("none", False, {"type": "none"}),  # none takes no parallel flag
        (None, True, None),
    ],
)
def test_tool_choice_and_parallel_tool_calls(choice: Any, parallel: Any, expected: Any) -> None:
    extra: dict[str, Any] = {}
    if choice is not None:
        extra["tool_choice"] = choice
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel
    out = translate(messages=[USER], tools=[FUNCTION], **extra)
    assert out.get("tool_choice") == expected


def test_tool_choice_without_tools() -> None:
    out = translate(messages=[USER], tool_choice="auto", parallel_tool_calls=False)
    assert "tool_choice" not in out and "tools" not in out
    err = refused({"model": "m", "messages": [USER], "tool_choice": "required"})
    assert err.param == "tool_choice"


def test_sampling_limits_stop_user_and_stream() -> None:
    out = translate(
        messages=[USER],
        max_completion_tokens=300,
        max_tokens=200,  # the newer name wins
        temperature=0.2,
        top_p=0.9,
        stop=["END", "STOP"],
        user="u-1",
        stream=True,
        stream_options={"include_usage": True},
    )
    assert out["max_tokens"] == 300 and out["temperature"] == 0.2 and out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END", "STOP"]
    assert out["metadata"] == {"user_id": "u-1"}
    assert out["stream"] is True
    request = chat_to_messages({"model": "m", "messages": [USER], "stream": True,
                                "stream_options": {"include_usage": True}})  # fmt: skip
    assert request.stream and request.include_usage
    out = translate(messages=[USER], max_tokens=50, stop="END", safety_identifier="s", user="u")
    assert out["max_tokens"] == 50 and out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "s"}


def test_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}
    out = translate(messages=[USER], response_format=fmt)
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in translate(messages=[USER], response_format={"type": "text"})


def test_neutral_values_change_nothing() -> None:
    plain = translate(messages=[USER])
    neutral = translate(
        messages=[USER],
        n=1,
        logprobs=False,
        presence_penalty=0,
        frequency_penalty=0.0,
        logit_bias={},
        seed=7,
        store=False,
        metadata={"k": "v"},
        prompt_cache_key="session-1",
        service_tier="auto",
        modalities=["text"],
        audio=None,
        reasoning_effort=None,
    )
    assert neutral == plain


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"n": True}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"store": True}, "store"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"made_up": 1}, "made_up"),
        ({"response_format": {"type": "json_object"}}, "response_format.type"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": "high"}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"stop": ["a", 1]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": 1}}, "stream_options"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"tools": [FUNCTION], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [FUNCTION], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
        ({"user": 5}, "user"),
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "only system"}]}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}
                ]
            },
            "messages[0].content[0].file.file_id",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}
                ]
            },
            "messages[0].function_call",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "custom"}]}]},
            "messages[0].tool_calls[0].type",
        ),
    ],
)
def test_refused(extra: dict[str, Any], param: str) -> None:
    err = refused({"model": "m", "messages": [USER], **extra})
    assert err.param == param
    assert err.message


def test_refusals_name_the_value() -> None:
    err = refused({"model": "m", "messages": [USER], "n": 3})
    assert err.message == "`n` = 3 is not supported by this gateway"
    assert refused([]).param == "body"


# Any JSON value at all, then request-shaped values: mostly valid, with arbitrary JSON
# wherever the shape branches, so the deep paths are reached too.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
URLS = st.sampled_from(["https://x/y.png", f"data:image/png;base64,{PNG}", "data:x", "ftp://y"])
PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text()}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": URLS}) | JSON}
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url", "file", "refusal", "x"])},
        optional={"text": JSON, "image_url": JSON, "file": JSON, "refusal": JSON},
    ),
)
ARGUMENTS = st.sampled_from(["", "{}", '{"a": [1]}', "[1]", "{", "null"]) | JSON
CALL = st.fixed_dictionaries(
    {
        "id": st.text(),
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": st.text(), "arguments": ARGUMENTS}) | JSON,
    }
)
PLAIN_PART = st.fixed_dictionaries({"type": st.just("text"), "text": st.text()})
VALID_MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user"]),
            "content": st.text() | st.lists(PLAIN_PART, max_size=2),
        }
    ),
    st.fixed_dictionaries(
        {"role": st.just("user"), "content": st.text() | st.lists(PART, max_size=3)}
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.none() | st.text()},
        optional={"tool_calls": st.lists(CALL, max_size=2)},
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": st.text(), "content": st.text()}
    ),
)
FUZZ_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "x"]),
        "content": st.one_of(st.text(), st.lists(PART, max_size=3), JSON),
    },
    optional={
        "tool_calls": st.lists(CALL | JSON, max_size=2) | JSON,
        "tool_call_id": st.text() | JSON,
        "refusal": st.none() | JSON,
    },
)
MESSAGE = st.one_of(VALID_MESSAGE, VALID_MESSAGE, VALID_MESSAGE, FUZZ_MESSAGE)
TOOL = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": st.text()}, optional={"parameters": JSON, "strict": JSON}
        ),
    }
)
KEYS = st.sampled_from(
    ["tool_choice", "stop", "temperature", "max_tokens", "stream", "stream_options", "user",
     "response_format", "parallel_tool_calls", "n", "logit_bias", "presence_penalty"]
)  # fmt: skip
REQUESTS = st.fixed_dictionaries(
    {"model": st.just("m"), "messages": st.lists(MESSAGE, min_size=1, max_size=4) | JSON},
    optional={"tools": st.lists(TOOL | JSON, max_size=2)},
).flatmap(
    lambda base: st.dictionaries(KEYS, st.none() | JSON, max_size=2).map(
        lambda extra: {**base, **extra}
    )
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON | REQUESTS)
def test_any_json_raises_only_translation_error(body: Any) -> None:
    try:
        request = chat_to_messages(body)
    except TranslationError as exc:
        assert isinstance(exc.message, str) and exc.message
        return
    assert isinstance(orjson.loads(request.messages_body), dict)


# ---------------------------------------------------------------- responses


MESSAGE_WITH_TOOLS = {
    "id": "msg_01ABC",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "let me see", "signature": "sig"},
        {"type": "text", "text": "Checking "},
        {"type": "text", "text": "both."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 3000,
        "output_tokens": 40,
    },
}


def test_message_with_tools_and_cache_usage() -> None:
    out = message_to_chat_completion(MESSAGE_WITH_TOOLS, model="gpt-4o", created=1700000000)
    completion = ChatCompletion.model_validate(out)
    assert completion.id == "chatcmpl-msg_01ABC"
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o" and completion.created == 1700000000
    (choice,) = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.role == "assistant" and choice.message.content == "Checking both."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_1", "weather", '{"city":"Paris"}'),
        ("toolu_2", "time", "{}"),
    ]
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3112, 40, 3152)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 3000


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        (None, "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "stop"),  # no tool_use block came: the client must not wait for calls
        ("refusal", "content_filter"),
    ],
)
def test_finish_reasons(stop_reason: Any, finish: str) -> None:
    message = {
        "id": "msg_1",
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": stop_reason,
    }
    out = message_to_chat_completion(message, model="m", created=0)
    completion = ChatCompletion.model_validate(out)
    assert completion.choices[0].finish_reason == finish
    assert completion.choices[0].message.tool_calls is None


def test_empty_and_tool_only_messages() -> None:
    empty = message_to_chat_completion(
        {"content": [], "stop_reason": "max_tokens"}, model="m", created=0
    )
    assert ChatCompletion.model_validate(empty).choices[0].message.content == ""
    assert empty["id"].startswith("chatcmpl-")
    assert empty["usage"]["total_tokens"] == 0
    only = {"id": "msg_2", "content": [MESSAGE_WITH_TOOLS["content"][3]], "stop_reason": "tool_use"}  # type: ignore[index]
    out = message_to_chat_completion(only, model="m", created=0)
    assert out["choices"][0]["message"]["content"] is None
    with pytest.raises(TranslationError):
        message_to_chat_completion([], model="m", created=0)  # type: ignore[arg-type]


# ---------------------------------------------------------------- errors


def sdk_client(handler: Any) -> openai.OpenAI:
    transport = httpx2.MockTransport(handler)
    http_client = httpx2.Client(transport=transport)
    return openai.OpenAI(
        api_key="k", base_url="http://gw/v1", max_retries=0, http_client=http_client
    )


def anthropic_body(error_type: str, message: str = "boom") -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})


@pytest.mark.parametrize(
    ("status", "error_type", "want_status", "want_type", "exc"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error", openai.BadRequestError),
        (401, "authentication_error", 401, "invalid_request_error", openai.AuthenticationError),
        (403, "permission_error", 403, "permission_error", openai.PermissionDeniedError),
        (404, "not_found_error", 404, "invalid_request_error", openai.NotFoundError),
        (413, "request_too_large", 413, "invalid_request_error", openai.APIStatusError),
        (429, "rate_limit_error", 429, "rate_limit_error", openai.RateLimitError),
        (402, "billing_error", 402, "insufficient_quota", openai.APIStatusError),
        (500, "api_error", 500, "server_error", openai.InternalServerError),
        (504, "timeout_error", 504, "timeout_error", openai.InternalServerError),
        (529, "overloaded_error", 503, "server_error", openai.InternalServerError),
    ],
)
def test_error_bodies(
    status: int, error_type: str, want_status: int, want_type: str, exc: type[Exception]
) -> None:
    got_status, body = anthropic_error_to_openai(status, anthropic_body(error_type))
    assert got_status == want_status
    assert body["error"]["type"] == want_type and body["error"]["message"] == "boom"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    client = sdk_client(lambda request: httpx2.Response(got_status, json=body))
    with pytest.raises(exc) as err:
        client.chat.completions.create(model="m", messages=[USER])
    assert getattr(err.value, "type", None) == want_type
    assert getattr(err.value, "code", None) == body["error"]["code"]


def test_error_bodies_that_are_odd() -> None:
    _, body = anthropic_error_to_openai(502, b"<html>Bad Gateway</html>")
    assert body == openai_error_body(
        "upstream returned HTTP 502: <html>Bad Gateway</html>", type="server_error"
    )
    _, body = anthropic_error_to_openai(429, b"")
    assert body["error"]["type"] == "rate_limit_error"
    _, body = anthropic_error_to_openai(418, orjson.dumps({"error": {"type": "teapot"}}))
    assert body["error"]["type"] == "invalid_request_error"
    too_long = anthropic_body("invalid_request_error", "prompt is too long: 210000 tokens > 200000")
    _, body = anthropic_error_to_openai(400, too_long)
    assert body["error"]["code"] == "context_length_exceeded"


def test_openai_error_body_and_translation_errors() -> None:
    err = refused({"model": "m", "messages": [USER], "n": 2})
    body = openai_error_body(err.message, param=err.param)
    assert body == {
        "error": {
            "message": err.message,
            "type": "invalid_request_error",
            "param": "n",
            "code": None,
        }
    }
    assert openai_error_for("weird_new_type", "x")["error"]["type"] == "server_error"
    client = sdk_client(lambda request: httpx2.Response(400, json=body))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[USER])
    assert caught.value.param == "n"


def test_values_orjson_cannot_encode_are_translation_errors() -> None:
    deep: Any = {}
    for _ in range(300):  # orjson stops at 255 levels
        deep = {"type": "object", "properties": {"x": deep}}
    huge = {"type": "object", "maximum": 2**70}
    for schema in (deep, huge):
        tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
        err = refused({"model": "m", "messages": [USER], "tools": [tool]})
        assert err.message.startswith("request cannot be encoded")
    assert "unencodable" in refused({"model": "m", "messages": [USER], "n": 2**70}).message


def test_message_level_cache_control_lands_on_the_message_blocks() -> None:
    """opencode (the AI SDK) marks whole messages and tool calls as cache breakpoints; each
    mark must reach Anthropic or its users get no prompt-cache reads."""
    eph = {"type": "ephemeral"}
    out = translate(
        model="claude-sonnet-4-6",
        messages=[
            {"role": "system", "content": "You are OpenCode.", "cache_control": eph},
            {"role": "user", "content": "list files", "cache_control": eph},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "bash", "arguments": '{"command":"ls"}'},
                        "cache_control": eph,
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a b", "cache_control": eph},
        ],
    )
    assert out["system"] == [{"type": "text", "text": "You are OpenCode.", "cache_control": eph}]
    user, assistant, results = out["messages"]
    assert user["content"] == [{"type": "text", "text": "list files", "cache_control": eph}]
    assert assistant["content"][-1]["cache_control"] == eph
    assert results["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "a b",
        "cache_control": eph,
    }
    plain = translate(
        model="m", messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    )
    assert plain["system"] == "s"  # no breakpoint: a plain string, as before
