"""Anthropic SSE → OpenAI chat.completion.chunk SSE, judged by the openai SDK's own parser."""

from __future__ import annotations

import itertools
from typing import Any

import httpx2
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from sluice.translate.chat_egress_stream import SseToChatChunks

MODEL = "gpt-4o"
CREATED = 1700000000


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events
    )


def start(input_tokens: int = 472, cache_read: int = 0, cache_write: int = 0) -> dict[str, Any]:
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": 2,
    }
    message = {
        "id": "msg_01XF",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return {"type": "message_start", "message": message}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def text(index: int, value: str) -> dict[str, Any]:
    delta = {"type": "text_delta", "text": value}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def args(index: int, value: str) -> dict[str, Any]:
    delta = {"type": "input_json_delta", "partial_json": value}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def tool(index: int, call_id: str, name: str) -> dict[str, Any]:
    return block_start(index, {"type": "tool_use", "id": call_id, "name": name, "input": {}})


def end(stop_reason: str, output_tokens: int = 89, **usage: int) -> list[dict[str, Any]]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    message_delta = {
        "type": "message_delta",
        "delta": delta,
        "usage": {"output_tokens": output_tokens, **usage},
    }
    return [message_delta, {"type": "message_stop"}]


PING = {"type": "ping"}
TEXT_THEN_TOOL = sse(
    start(),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    text(0, "Let me check the weather"),
    text(0, " in Paris."),
    stop(0),
    tool(1, "toolu_01T1", "get_weather"),
    args(1, ""),
    args(1, '{"location": "Par'),
    args(1, 'is, FR"}'),
    stop(1),
    *end("tool_use"),
)
PARALLEL = sse(
    start(input_tokens=10, cache_read=900, cache_write=50),
    block_start(0, {"type": "thinking", "thinking": ""}),
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hm"},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "s"},
    },
    stop(0),
    tool(1, "toolu_a", "read"),
    args(1, '{"path":'),
    args(1, '"a.py"}'),
    stop(1),
    tool(2, "toolu_b", "read"),
    args(2, '{"path":"b.py"}'),
    stop(2),
    tool(3, "toolu_c", "now"),
    stop(3),
    *end("tool_use", output_tokens=120),
)
PLAIN = sse(
    start(),
    block_start(0, {"type": "text", "text": ""}),
    text(0, "Hello"),
    text(0, " ✓ world"),  # multi-byte UTF-8, split mid-character when fed byte by byte
    stop(0),
    *end("end_turn", output_tokens=5),
)
SCENARIOS = {"text_then_tool": TEXT_THEN_TOOL, "parallel": PARALLEL, "plain": PLAIN}


def run(data: bytes, cuts: list[int], include_usage: bool = True) -> bytes:
    translator = SseToChatChunks(MODEL, CREATED, include_usage)
    bounds = [0, *sorted(set(cuts)), len(data)]
    out = [translator.feed(data[a:b]) for a, b in itertools.pairwise(bounds)]
    out.append(translator.finish())
    assert translator.done
    return b"".join(out)


def frames(output: bytes) -> list[bytes]:
    """The SSE events of the output, which must be well formed: one line, then a blank one."""
    assert output.endswith(b"\n\n")
    events = output[:-2].split(b"\n\n")
    assert all(b"\n" not in e for e in events)
    return events


def chunks(output: bytes) -> list[ChatCompletionChunk]:
    data = [f[6:] for f in frames(output) if f.startswith(b"data: ")]
    assert data[-1] == b"[DONE]"
    return [ChatCompletionChunk.model_validate(orjson.loads(d)) for d in data[:-1]]


def collect(parsed: list[ChatCompletionChunk]) -> dict[str, Any]:
    """What a client assembles: content, tool calls by index, finish_reason, usage."""
    content, calls, finish, usage = "", dict[int, dict[str, str]](), None, None
    for c in parsed:
        assert (c.id, c.object, c.created, c.model) == (
            "chatcmpl-msg_01XF",
            "chat.completion.chunk",
            CREATED,
            MODEL,
        )
        if c.usage is not None:
            assert c.choices == [] and c is parsed[-1]
            usage = c.usage.model_dump(exclude_none=True)
        for choice in c.choices:
            assert finish is None  # nothing after finish_reason but the usage chunk
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                assert call.function is not None
                entry["name"] += call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    return {"content": content, "calls": calls, "finish": finish, "usage": usage}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_byte_by_byte_equals_one_piece(name: str) -> None:
    data = SCENARIOS[name]
    whole = run(data, [])
    assert run(data, list(range(1, len(data)))) == whole
    crlf = data.replace(b"\n", b"\r\n")
    assert run(crlf, list(range(1, len(crlf)))) == whole
    assert run(data.replace(b"\n", b"\r"), []) == whole


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_chunking(data: st.DataObject) -> None:
    raw = data.draw(st.sampled_from(sorted(SCENARIOS.values())))
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40))
    assert run(raw, cuts) == run(raw, [])


def test_text_then_tool() -> None:
    output = run(TEXT_THEN_TOOL, [])
    parsed = chunks(output)
    first = parsed[0].choices[0].delta
    assert first.role == "assistant" and first.content == ""
    assert all(c.choices[0].delta.role is None for c in parsed[1:] if c.choices)
    got = collect(parsed)
    assert got["content"] == "Let me check the weather in Paris."
    assert got["calls"] == {
        0: {"id": "toolu_01T1", "name": "get_weather", "arguments": '{"location": "Paris, FR"}'}
    }
    assert got["finish"] == "tool_calls"
    assert got["usage"] == {
        "prompt_tokens": 472,
        "completion_tokens": 89,
        "total_tokens": 561,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    }
    assert b": ping\n\n" in output  # the keepalive survives as a comment
    assert output.endswith(b"data: [DONE]\n\n")


def test_parallel_tool_calls_count_from_zero() -> None:
    got = collect(chunks(run(PARALLEL, [])))
    assert got["content"] == ""  # thinking is left out
    assert got["calls"] == {
        0: {"id": "toolu_a", "name": "read", "arguments": '{"path":"a.py"}'},
        1: {"id": "toolu_b", "name": "read", "arguments": '{"path":"b.py"}'},
        2: {"id": "toolu_c", "name": "now", "arguments": ""},
    }
    assert got["finish"] == "tool_calls"
    assert got["usage"] == {
        "prompt_tokens": 960,
        "completion_tokens": 120,
        "total_tokens": 1080,
        "prompt_tokens_details": {"cached_tokens": 900, "cache_write_tokens": 50},
    }


def test_without_include_usage_there_is_no_usage_chunk() -> None:
    output = run(PLAIN, [], include_usage=False)
    parsed = chunks(output)
    assert all(c.usage is None and len(c.choices) == 1 for c in parsed)
    got = collect(parsed)
    assert got == {"content": "Hello ✓ world", "calls": {}, "finish": "stop", "usage": None}
    assert b"usage" not in output


def test_message_delta_totals_overwrite_the_start_usage() -> None:
    data = sse(start(input_tokens=0), *end("max_tokens", output_tokens=7, input_tokens=33))
    got = collect(chunks(run(data, [])))
    assert got["finish"] == "length"
    assert got["usage"]["prompt_tokens"] == 33 and got["usage"]["completion_tokens"] == 7


def sdk_client(body: bytes) -> openai.OpenAI:
    headers = {"content-type": "text/event-stream"}
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, content=body, headers=headers)
    )
    http_client = httpx2.Client(transport=transport)
    return openai.OpenAI(
        api_key="k", base_url="http://gw/v1", max_retries=0, http_client=http_client
    )


def test_sdk_assembles_the_stream() -> None:
    client = sdk_client(run(TEXT_THEN_TOOL, list(range(0, len(TEXT_THEN_TOOL), 7))))
    with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "weather?"}],
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Let me check the weather in Paris."
    (call,) = message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"location": "Paris, FR"}  # type: ignore[union-attr]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 561


ERROR = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_error_mid_stream_ends_the_stream_without_done() -> None:
    data = sse(start(), block_start(0, {"type": "text", "text": ""}), text(0, "Hal"), ERROR)
    data += sse(text(0, "ignored"), *end("end_turn"))
    translator = SseToChatChunks(MODEL, CREATED, True)
    output = translator.feed(data)
    assert translator.done and translator.feed(b"more") == b"" and translator.finish() == b""
    *ok, last = frames(output)
    assert [
        ChatCompletionChunk.model_validate_json(f[6:]).choices[0].delta.content for f in ok
    ] == ["", "Hal"]
    assert orjson.loads(last[6:]) == {
        "error": {
            "message": "Overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded",
        }
    }
    assert b"[DONE]" not in output
    client = sdk_client(output)
    seen = []
    with pytest.raises(openai.APIError, match="Overloaded"):
        for c in client.chat.completions.create(model=MODEL, messages=[], stream=True):
            seen.append(c.choices[0].delta.content)
    assert seen == ["", "Hal"]


def test_cut_off_streams() -> None:
    translator = SseToChatChunks(MODEL, CREATED, False)
    partial = sse(start(), tool(0, "toolu_x", "rm"), args(0, '{"path": "/'))
    out = translator.feed(partial) + translator.finish()
    last = orjson.loads(frames(out)[-1][6:])
    assert last["error"]["type"] == "server_error" and "ended before" in last["error"]["message"]
    assert b"[DONE]" not in out and b'finish_reason":"tool_calls' not in out

    # message_delta came, message_stop did not (and the last event lacks its blank line).
    translator = SseToChatChunks(MODEL, CREATED, True)
    data = sse(start(), *end("end_turn")[:1])[:-1]
    out = translator.feed(data) + translator.finish()
    assert out.endswith(b"data: [DONE]\n\n")
    assert collect(chunks(out))["finish"] == "stop"

    # Nothing at all.
    translator = SseToChatChunks(MODEL, CREATED, True)
    assert b'"error"' in translator.finish()


def test_not_json_and_unknown_events() -> None:
    translator = SseToChatChunks(MODEL, CREATED, False)
    out = translator.feed(sse(start()) + b'event: mystery\ndata: {"type":"mystery"}\n\n')
    assert len(frames(out)) == 1  # the unknown event is skipped
    out = translator.feed(b": a comment\nid: 3\ndata: {oops\n\n")
    assert orjson.loads(frames(out)[-1][6:])["error"]["type"] == "server_error"
    assert translator.done


def test_stream_is_not_buffered() -> None:
    translator = SseToChatChunks(MODEL, CREATED, True)
    assert translator.feed(sse(start())) != b""
    assert b"Hello" in translator.feed(
        sse(block_start(0, {"type": "text", "text": ""}), text(0, "Hello"))
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
KINDS = ["message_start", "content_block_start", "content_block_delta", "message_delta",
         "message_stop", "ping", "error", "content_block_stop"]  # fmt: skip
EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(KINDS)},
    optional={
        "index": st.integers(0, 2) | JSON,
        "message": JSON,
        "content_block": st.fixed_dictionaries(
            {"type": st.just("tool_use")}, optional={"id": JSON, "name": JSON}
        )
        | JSON,
        "delta": st.fixed_dictionaries(
            {"type": st.sampled_from(["text_delta", "input_json_delta"])},
            optional={"text": JSON, "partial_json": JSON, "stop_reason": JSON},
        )
        | JSON,
        "usage": st.dictionaries(st.sampled_from(["input_tokens", "output_tokens"]), JSON),
        "error": JSON,
    },
)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(EVENT | JSON.map(lambda v: {"type": "content_block_delta", "delta": v})))
def test_odd_events_never_raise(events: list[dict[str, Any]]) -> None:
    translator = SseToChatChunks(MODEL, CREATED, True)
    data = b"".join(b"data: %s\n\n" % orjson.dumps(e) for e in events)
    out = translator.feed(data) + translator.finish()
    assert translator.done and out.endswith(b"\n\n")
    for frame in frames(out):
        if frame.startswith(b"data: {") and b'"error"' not in frame[:16]:
            ChatCompletionChunk.model_validate_json(frame[6:])


def test_absurd_usage_values_are_ignored() -> None:
    big = 2**63 - 1
    data = sse(
        start(input_tokens=big), *end("end_turn", output_tokens=big, cache_read_input_tokens=-1)
    )
    got = collect(chunks(run(data, [])))
    # Only message_start's sane output count (2) is left; nothing overflows 64 bits.
    assert (got["usage"]["prompt_tokens"], got["usage"]["total_tokens"]) == (0, 2)
