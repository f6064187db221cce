"""Anthropic ⇄ OpenAI Chat translation, judged by the official SDKs' own types and parsers."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pydantic
import pytest
from anthropic._streaming import SSEDecoder
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat import completion_create_params as oa_params

from sluice.translate.openai_chat import BILLING_PREFIX, TranslationError, anthropic_to_openai
from sluice.translate.openai_response import (
    openai_error_to_anthropic,
    openai_to_anthropic_message,
)
from sluice.translate.openai_stream import OpenAIStreamTranslator

FIXTURES = Path(__file__).parent.parent / "fixtures" / "claude-code"
BODIES = {
    p.name: body
    for p in sorted(FIXTURES.glob("*.json"))
    if isinstance(body := orjson.loads(p.read_bytes()).get("body"), dict)
}
MODEL = "claude-sonnet-5"
EVENTS = pydantic.TypeAdapter(RawMessageStreamEvent)


def materialize(value: Any) -> Any:
    """Pydantic validates openai's Iterable[...] fields lazily; iterating runs the checks."""
    if isinstance(value, Iterator):  # pydantic's ValidatorIterator
        return [materialize(v) for v in value]
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [materialize(v) for v in value]
    return value


# Kept alive: the lazily checked Iterable fields need their validator after validate_python.
STREAMING = pydantic.TypeAdapter(oa_params.CompletionCreateParamsStreaming)
NON_STREAMING = pydantic.TypeAdapter(oa_params.CompletionCreateParamsNonStreaming)


def validate_openai_request(out: dict[str, Any]) -> None:
    adapter = STREAMING if out.get("stream") else NON_STREAMING
    materialize(adapter.validate_python(out))


# ---------------------------------------------------------------- requests


@pytest.mark.parametrize("name", sorted(BODIES))
def test_claude_code_requests_translate(name: str) -> None:
    body = BODIES[name]
    out = anthropic_to_openai(body, model="gpt-5")
    validate_openai_request(out)
    messages = out["messages"]
    assert out["model"] == "gpt-5"
    assert {m["role"] for m in messages} <= {"system", "user", "assistant", "tool"}

    # The billing line is gone and the rest of `system` is the first message.
    raw = orjson.dumps(out).decode()
    assert BILLING_PREFIX not in raw
    kept = [b["text"] for b in body["system"] if not b["text"].startswith(BILLING_PREFIX)]
    assert messages[0] == {"role": "system", "content": "\n\n".join(kept)}
    # cache_control and Anthropic-only request config are not sent.
    for word in ("cache_control", "context_management", "output_config", "thinking"):
        assert f'"{word}"' not in raw

    # Message order is kept; mid-conversation system messages stay in their place.
    expected: list[tuple[str, Any]] = []
    for src in body["messages"]:
        content = src["content"]
        if src["role"] != "user" or isinstance(content, str):
            expected.append((src["role"], content if src["role"] == "system" else None))
            continue
        expected += [("tool", None) for b in content if b["type"] == "tool_result"]
        if any(b["type"] != "tool_result" for b in content):
            expected.append(("user", None))
    got = [(m["role"], m["content"] if m["role"] == "system" else None) for m in messages[1:]]
    assert got == expected

    # Every tool call is answered by a tool message right after its assistant message.
    for i, m in enumerate(messages):
        calls = m.get("tool_calls") or []
        answered = [t["tool_call_id"] for t in messages[i + 1 : i + 1 + len(calls)]]
        assert answered == [c["id"] for c in calls]
    uses = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
    for use in (b for b in uses if b["type"] == "tool_use"):
        (call,) = [c for m in messages for c in m.get("tool_calls") or [] if c["id"] == use["id"]]
        assert orjson.loads(call["function"]["arguments"]) == use["input"]

    assert [t["function"]["name"] for t in out["tools"]] == [t["name"] for t in body["tools"]]
    assert out["tools"][0]["function"]["parameters"] == body["tools"][0]["input_schema"]
    assert out["max_completion_tokens"] == body["max_tokens"]
    assert out.get("stream_options") == ({"include_usage": True} if body.get("stream") else None)
    assert out["user"] == orjson.loads(body["metadata"]["user_id"])["session_id"]


def test_denied_tool_result_is_prefixed_and_billing_line_can_be_kept() -> None:
    body = BODIES["13-tool-denied-turn2-is_error.json"]
    (tool,) = [m for m in anthropic_to_openai(body, model="m")["messages"] if m["role"] == "tool"]
    assert tool["content"] == "Error: This command requires approval"
    kept = anthropic_to_openai(body, model="m", strip_billing_header=False)
    assert kept["messages"][0]["content"].startswith(BILLING_PREFIX)


PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


def test_tool_results_come_first_and_images_follow_as_user_parts() -> None:
    body = {
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "look"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm"},  # unsigned: droppable
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "tool_use", "id": "t1", "name": "Read", "input": {"p": "a.png"}},
                    {"type": "tool_use", "id": "t2", "name": "Bash", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "both done"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "line 1"},
                            {"type": "image", "source": PNG},
                            {"type": "text", "text": "line 2"},
                        ],
                    },
                    {"type": "tool_result", "tool_use_id": "t2", "content": "ok"},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}},
                ],
            },
        ],
    }
    out = anthropic_to_openai(body, model="m")
    validate_openai_request(out)
    user, assistant, tool1, tool2, last = out["messages"]
    assert user == {"role": "user", "content": "look"}
    assert assistant["content"] is None and len(assistant["tool_calls"]) == 2
    assert tool1 == {"role": "tool", "tool_call_id": "t1", "content": "line 1\nline 2"}
    assert tool2 == {"role": "tool", "tool_call_id": "t2", "content": "ok"}
    assert last["role"] == "user"
    assert last["content"] == [
        {"type": "text", "text": "both done"},
        {"type": "text", "text": "Attachments of tool result t1:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    body = {"messages": [], "tools": tools, "tool_choice": choice, "max_tokens": 5}
    out = anthropic_to_openai(body, model="m")
    assert out["tool_choice"] == expected and "parallel_tool_calls" not in out
    choice = {**choice, "disable_parallel_tool_use": True}
    out = anthropic_to_openai({**body, "tool_choice": choice}, model="m")
    assert out["parallel_tool_calls"] is False


def test_sampling_stop_and_other_fields() -> None:
    body = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "system": "be brief",
        "max_tokens": 7,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": '{"device_id":"d"}'},
        "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {}}},
    }
    out = anthropic_to_openai(body, model="m")
    validate_openai_request(out)
    assert out["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert (out["temperature"], out["top_p"], out["stop"]) == (0.3, 0.9, ["END"])
    assert "top_k" not in out and "stream" not in out
    assert out["user"] == hashlib.sha256(b'{"device_id":"d"}').hexdigest()
    assert out["response_format"]["type"] == "json_schema"
    plain = {**body, "metadata": {"user_id": "user_abc_session_1"}}
    assert anthropic_to_openai(plain, model="m")["user"] == "user_abc_session_1"


def test_pdf_document_becomes_a_file_part() -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}
    doc = {"type": "document", "source": pdf, "title": "spec.pdf"}
    body = {"messages": [{"role": "user", "content": [doc]}], "max_tokens": 5}
    (msg,) = anthropic_to_openai(body, model="m")["messages"]
    file = {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}
    assert msg["content"] == [{"type": "file", "file": file}]


def _user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


SIGNED = {"type": "thinking", "thinking": "t", "signature": "sig"}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "code_execution_20250825", "name": "x"}]}, "tools[0].type"),
        ({"mcp_servers": [{"type": "url", "url": "https://m", "name": "m"}]}, "mcp_servers"),
        ({"container": "c_1"}, "container"),
        ({"messages": [{"role": "assistant", "content": [SIGNED]}]}, "messages[0].content[0]"),
        (
            {"messages": [_user({"type": "document", "source": {"type": "url", "url": "u"}})]},
            "messages[0].content[0].source",
        ),
        (
            {"messages": [_user({"type": "search_result", "source": "s", "content": []})]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_unsupported_features_are_refused(extra: dict[str, Any], param: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, **extra}
    with pytest.raises(TranslationError) as err:
        anthropic_to_openai(body, model="m")
    assert err.value.param == param
    assert isinstance(err.value, ValueError)


def test_signed_thinking_can_be_dropped_on_request() -> None:
    tool_use = {"type": "tool_use", "id": "t", "name": "n", "input": {}}
    body = {"messages": [{"role": "assistant", "content": [SIGNED, tool_use]}], "max_tokens": 5}
    (msg,) = anthropic_to_openai(body, model="m", drop_signed_thinking=True)["messages"]
    assert msg["tool_calls"][0]["id"] == "t"


# ---------------------------------------------------------------- responses


def completion(finish_reason: str = "tool_calls", **message: Any) -> dict[str, Any]:
    resp = {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-5",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": None, **message},
            }
        ],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 30,
            "total_tokens": 1230,
            "prompt_tokens_details": {"cached_tokens": 1000},
        },
    }
    ChatCompletion.model_validate(resp)  # the test input is a real ChatCompletion
    return resp


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_completion_with_text_and_two_tool_calls() -> None:
    resp = completion(
        content="Checking.",
        tool_calls=[call("call_1", "Read", '{"path": "a"}'), call("call_2", "Bash", "")],
    )
    msg = openai_to_anthropic_message(resp, model=MODEL)
    parsed = Message.model_validate(msg)
    assert parsed.id == "msg_chatcmpl-9" and parsed.model == MODEL
    assert [b.type for b in parsed.content] == ["text", "tool_use", "tool_use"]
    assert msg["content"][1] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "Read",
        "input": {"path": "a"},
    }
    assert msg["content"][2]["input"] == {}
    assert parsed.stop_reason == "tool_use"
    usage = parsed.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (200, 1000)
    assert (usage.cache_creation_input_tokens, usage.output_tokens) == (0, 30)


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "end_turn"),  # no tool call came back: nothing to run
    ],
)
def test_finish_reasons(finish: str, stop: str) -> None:
    msg = openai_to_anthropic_message(completion(finish, content="x"), model=MODEL)
    assert Message.model_validate(msg).stop_reason == stop


def test_invalid_tool_arguments_are_an_error() -> None:
    resp = completion(tool_calls=[call("c", "Bash", '{"command": "ls"')])
    with pytest.raises(TranslationError) as err:
        openai_to_anthropic_message(resp, model=MODEL)
    assert err.value.param == "choices[0].message.tool_calls[0].function.arguments"


# ---------------------------------------------------------------- errors


def sdk_client(handler: Any) -> anthropic.Anthropic:
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="k",
        base_url="http://up",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    )


@pytest.mark.parametrize(
    ("status", "etype", "exc"),
    [
        (400, "invalid_request_error", anthropic.BadRequestError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (403, "permission_error", anthropic.PermissionDeniedError),
        (404, "not_found_error", anthropic.NotFoundError),
        (413, "request_too_large", anthropic.APIStatusError),
        (429, "rate_limit_error", anthropic.RateLimitError),
        (500, "api_error", anthropic.InternalServerError),
        (503, "overloaded_error", anthropic.InternalServerError),
        (529, "overloaded_error", anthropic.OverloadedError),
    ],
)
def test_error_bodies(status: int, etype: str, exc: type[Exception]) -> None:
    upstream = {"error": {"message": "boom", "type": "x", "param": None, "code": None}}
    got_status, body = openai_error_to_anthropic(status, orjson.dumps(upstream))
    assert got_status == status
    assert body == {"type": "error", "error": {"type": etype, "message": "boom"}}
    client = sdk_client(lambda request: httpx2.Response(status, json=body))
    with pytest.raises(exc) as err:
        client.messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert getattr(err.value, "body", None) == body


def test_error_bodies_that_are_not_openai_json() -> None:
    _, body = openai_error_to_anthropic(502, b"<html>Bad Gateway</html>")
    assert body["error"] == {
        "type": "api_error",
        "message": "upstream returned HTTP 502: <html>Bad Gateway</html>",
    }
    _, body = openai_error_to_anthropic(400, b'{"error": "plain"}')
    assert body["error"]["message"] == "plain"
    too_long = {"error": {"message": "max 8192 tokens", "code": "context_length_exceeded"}}
    _, body = openai_error_to_anthropic(400, orjson.dumps(too_long))
    assert body["error"]["message"].startswith("prompt is too long")


# ---------------------------------------------------------------- streams

USAGE = {
    "prompt_tokens": 900,
    "completion_tokens": 42,
    "total_tokens": 942,
    "prompt_tokens_details": {"cached_tokens": 700},
}
USAGE_ANTHROPIC = {
    "input_tokens": 200,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 700,
    "output_tokens": 42,
}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    payload: dict[str, Any] = {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-5",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    if "error" not in payload:
        ChatCompletionChunk.model_validate(payload)  # the test input is a real chunk
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def tool_delta(index: int, arguments: str, call_id: str = "", name: str = "") -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        fragment.update(id=call_id, type="function")
        fragment["function"]["name"] = name
    return {"tool_calls": [fragment]}


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream(body: list[bytes], finish: str, usage: bool = True) -> bytes:
    head = [chunk({"role": "assistant", "content": ""})]
    tail = [chunk({}, finish)] + ([chunk(None, usage=USAGE)] if usage else [])
    return b"".join(head + body + tail) + b"data: [DONE]\n\n"


ARGS_A = '{"nested": {"list": [1, {"x": "]"}]}, "command": "echo \\"}{\\" && ls"}'
ARGS_B = '{"path": "/tmp/ünïcode \\\\ file", "limit": 10}'
ARGS_C = '{"q": "third"}'
TEXT = "Hello — wörld.\u2028 Second line\nthird"

SCENARIOS: dict[str, tuple[bytes, list[Any], str]] = {
    "text": (
        stream([chunk({"content": p}) for p in pieces(TEXT, 3)], "stop"),
        [TEXT],
        "end_turn",
    ),
    "one_tool_many_fragments": (
        stream(
            [chunk(tool_delta(0, "", "call_a", "Bash"))]
            + [chunk(tool_delta(0, p)) for p in pieces(ARGS_A, 2)],
            "tool_calls",
        ),
        [("call_a", "Bash", ARGS_A)],
        "tool_use",
    ),
    "parallel_interleaved": (
        stream(
            [chunk(tool_delta(0, "", "call_a", "Bash")), chunk(tool_delta(1, "", "call_b", "Read"))]
            + [
                chunk(tool_delta(index, p))
                for a, b in zip(pieces(ARGS_A, 3), pieces(ARGS_B, 2), strict=False)
                for index, p in ((0, a), (1, b))
            ]
            + [chunk(tool_delta(0, p)) for p in pieces(ARGS_A, 3)[len(pieces(ARGS_B, 2)) :]]
            + [chunk(tool_delta(2, ARGS_C, "call_c", "Grep"))],
            "tool_calls",
        ),
        [("call_a", "Bash", ARGS_A), ("call_b", "Read", ARGS_B), ("call_c", "Grep", ARGS_C)],
        "tool_use",
    ),
    "text_then_tool": (
        stream(
            [chunk({"content": p}) for p in pieces(TEXT, 7)]
            + [chunk(tool_delta(0, "", "call_a", "Bash"))]
            + [chunk(tool_delta(0, p)) for p in pieces(ARGS_A, 9)],
            "tool_calls",
        ),
        [TEXT, ("call_a", "Bash", ARGS_A)],
        "tool_use",
    ),
    "length": (
        stream([chunk({"content": p}) for p in pieces(TEXT, 4)], "length"),
        [TEXT],
        "max_tokens",
    ),
}


def translate(data: bytes, cuts: list[int]) -> list[bytes]:
    translator = OpenAIStreamTranslator(MODEL)
    bounds = [0, *sorted(set(cuts)), len(data)]
    outs = [translator.feed(data[a:b]) for a, b in itertools.pairwise(bounds)]
    return [*outs, translator.finish()]


def events(output: bytes) -> list[dict[str, Any]]:
    """Exact framing, then the SDK's own decoder; each event checked against the SDK types."""
    frames = output.split(b"\n\n")
    assert frames.pop() == b""
    for frame in frames:
        match = re.fullmatch(rb"event: (\w+)\ndata: (\{.*\})", frame)
        assert match, frame
        assert orjson.loads(match[2])["type"] == match[1].decode()
    decoded = list(SSEDecoder().iter_bytes(iter([output])))
    assert [e.event for e in decoded] == [
        orjson.loads(f.split(b"data: ")[1])["type"] for f in frames
    ]
    return [orjson.loads(e.data) for e in decoded]


def check_order(evs: list[dict[str, Any]]) -> None:
    """message_start first, blocks 0, 1, 2… one at a time, message_stop once at the end."""
    assert evs[0]["type"] == "message_start"
    assert sum(e["type"] == "message_start" for e in evs) == 1
    open_index, next_index = None, 0
    for e in evs[1:]:
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == next_index
            open_index, next_index = e["index"], next_index + 1
        elif e["type"] in ("content_block_delta", "content_block_stop"):
            assert e["index"] == open_index
            if e["type"] == "content_block_stop":
                open_index = None
        elif e["type"] in ("message_delta", "message_stop"):
            assert open_index is None
    if evs[-1]["type"] != "error":
        assert [e["type"] for e in evs[-2:]] == ["message_delta", "message_stop"]


def accumulate(evs: list[dict[str, Any]]) -> Any:
    snapshot, bufs = None, {}
    for e in evs:
        event = EVENTS.validate_python(e)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


def expected_blocks(blocks: list[Any]) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": b}
        if isinstance(b, str)
        else {"type": "tool_use", "id": b[0], "name": b[1], "input": orjson.loads(b[2])}
        for b in blocks
    ]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_streams_any_chunking(name: str, data: st.DataObject) -> None:
    raw, blocks, stop_reason = SCENARIOS[name]
    whole = b"".join(translate(raw, []))
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40))
    outs = translate(raw, cuts)
    assert b"".join(outs) == whole  # (c) chunking never changes the output
    # (d) message_start goes out with the first complete upstream chunk.
    first_line_end = raw.index(b"\n") + 1
    fed = 0
    for piece_end, out in zip([*sorted(set(cuts)), len(raw)], outs, strict=False):
        fed = piece_end
        if fed >= first_line_end:
            assert out.startswith(b"event: message_start\n")
            break
        assert out == b""
    evs = events(whole)  # (a)
    check_order(evs)
    message = accumulate(evs)  # (b)
    content = [b.model_dump(exclude_none=True, exclude={"caller"}) for b in message.content]
    assert [{k: v for k, v in b.items() if k != "citations"} for b in content] == expected_blocks(
        blocks
    )
    assert message.stop_reason == stop_reason and message.model == MODEL
    assert message.id == "msg_chatcmpl-s1"
    usage = message.usage.model_dump(include=set(USAGE_ANTHROPIC))
    assert usage == USAGE_ANTHROPIC


def test_sdk_stream_end_to_end() -> None:
    raw = SCENARIOS["text_then_tool"][0]
    body = b"".join(translate(raw, list(range(0, len(raw), 11))))
    headers = {"content-type": "text/event-stream"}
    client = sdk_client(lambda request: httpx2.Response(200, content=body, headers=headers))
    with client.messages.stream(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        final = s.get_final_message()
    assert final.content[0].type == "text" and final.content[1].type == "tool_use"
    assert final.content[1].input == orjson.loads(ARGS_A)
    assert final.usage.input_tokens == 200 and final.usage.cache_read_input_tokens == 700


def test_stream_is_not_buffered() -> None:
    raw = SCENARIOS["parallel_interleaved"][0]
    translator = OpenAIStreamTranslator(MODEL)
    lines = raw.split(b"\n\n")[:4]  # role, call_a start, call_b start, first interleaved pair…
    out = b"".join(translator.feed(line + b"\n\n") for line in lines)
    kinds = [e["type"] for e in events(out)]
    assert kinds == ["message_start", "content_block_start", "content_block_delta"]


def test_error_chunk_becomes_an_error_event() -> None:
    raw = (
        chunk({"content": "partial"})
        + chunk(
            None,
            error={
                "message": "Rate limit reached",
                "type": "requests",
                "code": "rate_limit_exceeded",
            },
        )
        + chunk({"content": "ignored"})
    )
    evs = events(b"".join(translate(raw, [5, 70])))
    assert [e["type"] for e in evs] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert evs[-1]["error"] == {"type": "rate_limit_error", "message": "Rate limit reached"}
    body = b"".join(translate(raw, []))
    client = sdk_client(
        lambda r: httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    with pytest.raises(anthropic.APIStatusError) as err:  # noqa: SIM117
        with client.messages.stream(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            s.get_final_message()
    assert "Rate limit reached" in str(err.value)


def test_eof_without_done_and_cut_off_streams() -> None:
    # finish_reason seen but no [DONE]: a normal end, with no usage reported.
    raw = chunk({"content": "hi"}) + chunk({}, "stop")
    evs = events(b"".join(translate(raw, [])))
    check_order(evs)
    assert evs[-2]["delta"]["stop_reason"] == "end_turn"
    assert evs[-2]["usage"] == {"output_tokens": 0}
    # No finish_reason at all: the upstream was cut off; an error, not a finished turn.
    raw = chunk(tool_delta(0, '{"command": "rm -rf /tmp/x', "call_a", "Bash"))
    evs = events(b"".join(translate(raw, [])))
    assert evs[-1]["type"] == "error" and evs[-1]["error"]["type"] == "api_error"
    # An empty upstream body still yields a well-formed (failed) stream.
    assert [e["type"] for e in events(b"".join(translate(b"", [])))] == ["message_start", "error"]


def test_crlf_comments_and_unterminated_done() -> None:
    raw = SCENARIOS["text"][0]
    noisy = b": OPENROUTER PROCESSING\r\n\r\n" + raw.replace(b"\n", b"\r\n").rstrip(b"\r\n")
    assert b"".join(translate(noisy, [3, 400])) == b"".join(translate(raw, []))


def test_same_index_with_new_ids_are_separate_calls() -> None:
    raw = stream(
        [
            chunk(tool_delta(0, ARGS_C, "call_1", "Grep")),
            chunk(tool_delta(0, ARGS_B, "call_2", "Read")),
        ],
        "tool_calls",
    )
    message = accumulate(events(b"".join(translate(raw, []))))
    assert [(b.id, b.input) for b in message.content] == [
        ("call_1", orjson.loads(ARGS_C)),
        ("call_2", orjson.loads(ARGS_B)),
    ]


def test_sequential_tool_calls_stream_live() -> None:
    """A call whose JSON is complete closes when the next starts; finish_reason closes the last."""
    translator = OpenAIStreamTranslator(MODEL)
    translator.feed(chunk(tool_delta(0, "", "call_a", "Bash")))
    translator.feed(b"".join(chunk(tool_delta(0, p)) for p in pieces(ARGS_A, 4)))
    out = translator.feed(chunk(tool_delta(1, ARGS_C[:5], "call_c", "Grep")))
    assert [e["type"] for e in _frames(out)] == [
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
    ]
    out = translator.feed(chunk(tool_delta(1, ARGS_C[5:])) + chunk({}, "tool_calls"))
    assert [e["type"] for e in _frames(out)] == ["content_block_delta", "content_block_stop"]


def _frames(out: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(f.split(b"data: ")[1]) for f in out.split(b"\n\n") if f]
