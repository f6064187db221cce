"""The SSE splitter and the tap: whole events only, bytes never changed, usage accumulated."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.base.usage import ResponseFacts
from sluice.errors import GatewayError
from sluice.streaming.sse import SseEvent, SseSplitter
from sluice.streaming.tap import AnthropicFactsObserver, StreamTap


def event(name: str, payload: dict[str, object], eol: str = "\n") -> bytes:
    data = orjson.dumps(payload).decode()
    return f"event: {name}{eol}data: {data}{eol}{eol}".encode()


STREAM = b"".join(
    [
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "model": "claude-x",
                    "usage": {
                        "input_tokens": 10,
                        "output_tokens": 1,
                        "cache_read_input_tokens": 500,
                        "cache_creation_input_tokens": 30,
                        "cache_creation": {
                            "ephemeral_5m_input_tokens": 10,
                            "ephemeral_1h_input_tokens": 20,
                        },
                    },
                },
            },
        ),
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        event("ping", {"type": "ping"}),
        event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "hé\u2028llo"},
            },
        ),
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}},
            },
        ),
        event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            },
        ),
        event("content_block_stop", {"type": "content_block_stop", "index": 1}),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 42, "input_tokens": 10},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ]
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in points:
        chunks.append(data[last:p])
        last = p
    chunks.append(data[last:])
    return chunks


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=10**6), max_size=40))
def test_any_chunking_releases_the_same_bytes_and_events(cuts: list[int]) -> None:
    splitter = SseSplitter()
    released = b""
    names: list[bytes] = []
    for chunk in split_at(STREAM, cuts):
        out, events = splitter.feed(chunk)
        assert out == b"".join(e.raw for e in events)
        released += out
        names += [e.name for e in events]
        assert STREAM.startswith(released)
        assert released == b"" or released.endswith(b"\n\n")  # whole events only
    assert released == STREAM
    assert splitter.pending == b""
    assert names[0] == b"message_start" and names[-1] == b"message_stop" and len(names) == 10


@given(
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=20),
    st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_line_endings(cuts: list[int], eol: str) -> None:
    stream = event("a", {"x": 1}, eol) + b": comment" + eol.encode() + event("b", {"y": 2}, eol)
    splitter = SseSplitter()
    got: list[SseEvent] = []
    released = b""
    for chunk in split_at(stream, cuts):
        out, events = splitter.feed(chunk)
        released += out
        got += events
    released += splitter.pending
    assert released == stream
    if eol == "\r":
        # A trailing CR may start a CRLF: the last event waits for more bytes or the end.
        got += SseSplitter().feed(splitter.pending + b"\n")[1] if splitter.pending else []
    named = [(e.name, orjson.loads(e.data)) for e in got if e.name]
    assert named == [(b"a", {"x": 1}), (b"b", {"y": 2})]


@settings(max_examples=100)
@given(st.integers(min_value=1, max_value=4), st.integers(min_value=0, max_value=200))
def test_extra_blank_lines_between_events_do_not_hang(extra: int, cut: int) -> None:
    """b"\\n\\n\\n" once sent the fast path round forever (rfind overlapped find)."""
    stream = event("a", {"x": 1}, "\n") + b"\n" * extra + event("b", {"y": 2}, "\n")
    cut %= len(stream) + 1
    splitter = SseSplitter()
    got: list[SseEvent] = []
    released = b""
    for chunk in (stream[:cut], stream[cut:]):
        out, events = splitter.feed(chunk)
        assert out == b"".join(e.raw for e in events)
        released += out
        got += events
    assert released + splitter.pending == stream
    assert [(e.name, orjson.loads(e.data)) for e in got if e.name] == [
        (b"a", {"x": 1}),
        (b"b", {"y": 2}),
    ]


def test_multi_line_data_and_field_rules() -> None:
    _, events = SseSplitter().feed(b"event:x\ndata: a\ndata:b\nid: 1\nretry: 5\n\n")
    assert events[0].name == b"x"
    assert events[0].data == b"a\nb"


def test_facts_from_stream() -> None:
    facts = ResponseFacts.empty()
    tap = StreamTap([AnthropicFactsObserver(facts)])
    out = b"".join(tap.feed(STREAM[i : i + 7]) for i in range(0, len(STREAM), 7))
    assert out + tap.finish() == STREAM
    usage = facts.usage
    assert (usage.input_tokens, usage.output_tokens) == (10, 42)  # delta totals overwrite
    assert usage.cache_read_tokens == 500 and usage.cache_creation_tokens == 30
    assert (usage.cache_creation_5m_tokens, usage.cache_creation_1h_tokens) == (10, 20)
    assert usage.total_input_tokens == 540
    assert facts.response_id == "msg_1" and facts.response_model == "claude-x"
    assert facts.stop_reason == "tool_use"
    assert facts.tool_calls is not None
    assert [(t.id, t.name) for t in facts.tool_calls] == [("toolu_1", "Bash")]
    assert facts.first_token_at is not None
    assert facts.events == 10


class _DenyTool:
    def on_event(self, ev: SseEvent) -> GatewayError | None:
        if ev.name == b"content_block_start" and b'"tool_use"' in ev.data:
            return GatewayError("denied")
        return None


@given(st.lists(st.integers(min_value=0, max_value=10**6), max_size=30))
def test_verdict_withholds_the_event_and_everything_after(cuts: list[int]) -> None:
    tap = StreamTap([_DenyTool()])
    released = b"".join(tap.feed(c) for c in split_at(STREAM, cuts)) + tap.finish()
    cut = STREAM.index(b'event: content_block_start\ndata: {"type":"content_block_start","index":1')
    assert released == STREAM[:cut]
    assert tap.verdict is not None and tap.verdict.message == "denied"


def test_usage_ignores_non_ints_and_keeps_missing_fields() -> None:
    facts = ResponseFacts.empty()
    facts.usage.apply({"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 7})
    facts.usage.apply({"output_tokens": 9, "input_tokens": None, "cache_read_input_tokens": True})
    assert (facts.usage.input_tokens, facts.usage.output_tokens) == (5, 9)
    assert facts.usage.cache_read_tokens == 7
