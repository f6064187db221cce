"""Anthropic → Bedrock translation: betas, body, model ids, URL, SigV4, errors, and the
event-stream → SSE decoder fed the fake Bedrock's frames in arbitrary chunks."""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import re
from typing import Any

import botocore.auth
import orjson
import pytest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.base.json_spans import as_text, iter_members
from sluice.errors import ProviderError
from sluice.providers.aws_auth import sign_request
from sluice.streaming.eventstream import EventStreamToSSE
from sluice.testing.fake_bedrock import (
    chunk_frame,
    encode_frame,
    exception_frame,
    invocation_metrics,
    stream_frames,
)
from sluice.testing.scenarios import (
    FakeUsage,
    Reply,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    scenario_by_name,
    sse_event,
    stream_events,
)
from sluice.translate.bedrock import (
    DEFAULT_BETA_ALLOWLIST,
    DEFAULT_MODEL_MAP,
    bedrock_exception_to_anthropic,
    filter_betas,
    from_bedrock_model,
    invoke_url,
    to_bedrock_body,
    to_bedrock_model,
)

from support import fixture_names, fixture_request

CC_BETAS = (
    "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14,"
    "thinking-token-count-2026-05-13,context-management-2025-06-27,"
    "prompt-caching-scope-2026-01-05,mid-conversation-system-2026-04-07,effort-2025-11-24"
)
SONNET = "claude-sonnet-4-5-20250929"
SONNET_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def _post_fixtures() -> list[tuple[str, dict[str, str], bytes]]:
    out = []
    for name in fixture_names():
        headers, body = fixture_request(name)
        if body:
            out.append((name, {k.lower(): v for k, v in headers}, body))
    return out


FIXTURES = _post_fixtures()


# --- betas ----------------------------------------------------------------------------------


def test_the_fixtures_carry_claude_codes_betas() -> None:
    assert FIXTURES
    assert any(h.get("anthropic-beta") == CC_BETAS for _, h, _ in FIXTURES)


def test_claude_code_betas_keep_only_the_ones_bedrock_accepts() -> None:
    assert filter_betas(CC_BETAS, DEFAULT_BETA_ALLOWLIST) == [
        "context-1m-2025-08-07",
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
    ]


@pytest.mark.parametrize("name", [n for n, _, _ in FIXTURES])
def test_every_fixture_header_filters_to_allowlisted_names_in_order(name: str) -> None:
    header = next(h for n, h, _ in FIXTURES if n == name)["anthropic-beta"]
    sent = [b.strip() for b in header.split(",")]
    kept = filter_betas(header, DEFAULT_BETA_ALLOWLIST)
    expected = [DEFAULT_BETA_ALLOWLIST[b] for b in sent if DEFAULT_BETA_ALLOWLIST.get(b)]
    assert kept == expected
    for first_party in (
        "claude-code-20250219",
        "effort-2025-11-24",
        "thinking-token-count-2026-05-13",
    ):
        assert first_party not in kept


def test_renames_apply_and_duplicates_go() -> None:
    header = (
        " advanced-tool-use-2025-11-20, tool-search-tool-2025-10-19,,"
        "interleaved-thinking-2025-05-14,interleaved-thinking-2025-05-14,future-beta-2027-01-01"
    )
    assert filter_betas(header, DEFAULT_BETA_ALLOWLIST) == [
        "tool-search-tool-2025-10-19",
        "interleaved-thinking-2025-05-14",
    ]


def test_no_header_and_custom_allowlists() -> None:
    assert filter_betas(None, DEFAULT_BETA_ALLOWLIST) == []
    assert filter_betas("", DEFAULT_BETA_ALLOWLIST) == []
    custom = {"a-1": "b-1", "c-1": None}
    assert filter_betas("c-1,a-1,interleaved-thinking-2025-05-14", custom) == ["b-1"]


def test_first_party_entries_are_never_forwarded() -> None:
    dropped = [k for k, v in DEFAULT_BETA_ALLOWLIST.items() if v is None]
    assert "prompt-caching-scope-2026-01-05" in dropped
    assert filter_betas(",".join(dropped), DEFAULT_BETA_ALLOWLIST) == []


# --- body -----------------------------------------------------------------------------------


_REPLACED = {"model", "stream", "anthropic_version", "anthropic_beta"}


def _raw_members(raw: bytes) -> list[tuple[str, bytes]]:
    """(key, exact value bytes) of each top-level member, in order."""
    members = iter_members(as_text(raw), raw.index(b"{"))
    return [(key, raw[m.value_start : m.value_end]) for key, m in members]


def _check_body(original: bytes, betas: list[str]) -> None:
    out = to_bedrock_body(original, betas)
    parsed = orjson.loads(out)
    source = orjson.loads(original)
    head = ["anthropic_version"] + (["anthropic_beta"] if betas else [])
    kept = [k for k in source if k not in _REPLACED]
    assert list(parsed) == head + kept
    assert parsed["anthropic_version"] == "bedrock-2023-05-31"
    assert parsed.get("anthropic_beta", []) == betas
    assert {k: parsed[k] for k in kept} == {k: source[k] for k in kept}
    # byte-for-byte: every other member's value keeps its exact bytes and order
    before = [m for m in _raw_members(original) if m[0] not in _REPLACED]
    assert _raw_members(out)[len(head) :] == before


@pytest.mark.parametrize("name", [n for n, _, _ in FIXTURES])
def test_every_fixture_body_keeps_every_other_field(name: str) -> None:
    headers, body = next((h, b) for n, h, b in FIXTURES if n == name)
    betas = filter_betas(headers.get("anthropic-beta"), DEFAULT_BETA_ALLOWLIST)
    _check_body(body, betas)
    _check_body(body, [])
    pretty = json.dumps(orjson.loads(body), indent=2, ensure_ascii=False).encode()
    _check_body(pretty, betas)


def test_client_sent_bedrock_fields_are_replaced() -> None:
    body = b'{"anthropic_beta":["x"],"max_tokens":1,"anthropic_version":"old","model":"m"}'
    assert to_bedrock_body(body, ["y"]) == (
        b'{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["y"],"max_tokens":1}'
    )
    assert to_bedrock_body(b'{"model":"m","stream":true}', []) == (
        b'{"anthropic_version":"bedrock-2023-05-31"}'
    )


@pytest.mark.parametrize("bad", [b"", b"[1]", b'{"a":1', b"null", b"  "])
def test_a_body_that_is_not_an_object_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        to_bedrock_body(bad, [])


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["model", "stream", "messages", "max_tokens", "système", "x", "tools"]),
        _json_values,
    ),
    st.lists(st.sampled_from(["a-1", "b-2"]), max_size=2, unique=True),
    st.booleans(),
)
def test_any_object_keeps_its_other_members(
    body: dict[str, Any], betas: list[str], pretty: bool
) -> None:
    raw = json.dumps(body, indent=1 if pretty else None, ensure_ascii=pretty).encode()
    _check_body(raw, betas)


# --- model ids and URL ----------------------------------------------------------------------


def test_model_map_both_ways() -> None:
    assert to_bedrock_model(SONNET) == SONNET_ID
    assert (
        to_bedrock_model("claude-haiku-4-5-20251001")
        == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    )
    assert (
        to_bedrock_model("claude-opus-4-1-20250805") == "us.anthropic.claude-opus-4-1-20250805-v1:0"
    )
    assert to_bedrock_model("claude-sonnet-4-5") == SONNET_ID  # alias → same profile
    for name, model_id in DEFAULT_MODEL_MAP.items():
        assert to_bedrock_model(name) == model_id
        if re.search(r"-\d{8}$", name) or "-4-6" in name:
            assert from_bedrock_model(model_id) == name


def test_unknown_models_and_extra_mappings() -> None:
    assert to_bedrock_model("claude-opus-4-8") is None
    assert to_bedrock_model("gpt-5") is None
    extra = {"claude-opus-4-8": "global.anthropic.claude-opus-4-8-v1"}
    assert to_bedrock_model("claude-opus-4-8", extra) == "global.anthropic.claude-opus-4-8-v1"
    assert to_bedrock_model(SONNET, {SONNET: "eu.x"}) == "eu.x"  # extra wins
    assert (
        from_bedrock_model(
            "global.anthropic.claude-opus-4-8-v1",
            {"opus-alias": "global.anthropic.claude-opus-4-8-v1"},
        )
        == "opus-alias"
    )
    assert to_bedrock_model(SONNET_ID) == SONNET_ID  # already a Bedrock id
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    assert to_bedrock_model(arn) == arn


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", SONNET),
        ("global.anthropic.claude-opus-4-8-v1", "claude-opus-4-8"),
        ("anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku-20240307"),
        ("us.anthropic.claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("arn:aws:bedrock:us-east-1:1:inference-profile/apac.anthropic.claude-x-v2:0", "claude-x"),
        ("arn:aws:bedrock:us-east-1:1:application-inference-profile/abc123", "abc123"),
    ],
)
def test_from_bedrock_model_without_a_table_entry(model_id: str, name: str) -> None:
    assert from_bedrock_model(model_id) == name


def test_invoke_urls_encode_the_model_id_as_one_segment() -> None:
    assert invoke_url("us-east-1", SONNET_ID, True) == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
        "us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    )
    assert invoke_url("eu-west-1", SONNET_ID, False).endswith("-v1%3A0/invoke")
    arn = "arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.x"
    assert invoke_url("us-east-1", arn, False, base_url="http://127.0.0.1:9/") == (
        "http://127.0.0.1:9/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.anthropic.x/invoke"
    )


# --- SigV4 ----------------------------------------------------------------------------------

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"bedrock/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})"
)
FROZEN = datetime.datetime(2026, 11, 28, 9, 30, 0)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FROZEN)


def _sign(body: bytes, creds: Credentials, url: str | None = None) -> dict[str, str]:
    url = url or invoke_url("us-east-1", SONNET_ID, True)
    headers = {"content-type": "application/json", "Connection": "keep-alive"}
    return sign_request("POST", url, body, headers, creds, "us-east-1")


@pytest.mark.usefixtures("frozen_clock")
def test_sign_request_adds_sigv4_headers_and_keeps_the_given_ones() -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "session-token")
    signed = _sign(b'{"max_tokens":1}', creds)
    assert signed["content-type"] == "application/json"
    assert signed["Connection"] == "keep-alive"
    assert signed["X-Amz-Date"] == "20261128T093000Z"
    assert signed["X-Amz-Security-Token"] == "session-token"
    match = _AUTH.fullmatch(signed["Authorization"])
    assert match is not None
    assert (match["key"], match["date"], match["region"]) == (
        "AKIDEXAMPLE",
        "20261128",
        "us-east-1",
    )
    # hop-by-hop headers stay out of the signature, so a proxy may drop them
    assert match["signed"] == "content-type;host;x-amz-date;x-amz-security-token"
    no_token = _sign(b'{"max_tokens":1}', Credentials("AKIDEXAMPLE", "secret"))
    assert "X-Amz-Security-Token" not in no_token
    bare = _AUTH.fullmatch(no_token["Authorization"])
    assert bare is not None and bare["signed"] == "content-type;host;x-amz-date"


@pytest.mark.usefixtures("frozen_clock")
def test_same_inputs_same_signature_and_any_change_changes_it() -> None:
    creds = Credentials("AKIDEXAMPLE", "secret")
    first = _sign(b"{}", creds)["Authorization"]
    assert _sign(b"{}", creds)["Authorization"] == first
    assert _sign(b"{ }", creds)["Authorization"] != first
    assert _sign(b"{}", Credentials("AKIDEXAMPLE", "other"))["Authorization"] != first
    other_model = invoke_url("us-east-1", "us.anthropic.claude-haiku-4-5-20251001-v1:0", True)
    assert _sign(b"{}", creds, other_model)["Authorization"] != first


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "error_type"),
    [
        ("throttlingException", 429, "rate_limit_error"),
        (
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            429,
            "rate_limit_error",
        ),
        ("serviceUnavailableException", 529, "overloaded_error"),
        ("ServiceUnavailableException", 529, "overloaded_error"),
        ("modelStreamErrorException", 500, "api_error"),
        ("internalServerException", 500, "api_error"),
        ("validationException", 400, "invalid_request_error"),
        ("AccessDeniedException", 403, "permission_error"),
        ("modelTimeoutException", 504, "timeout_error"),
        ("ResourceNotFoundException", 404, "not_found_error"),
        ("somethingNewException", 500, "api_error"),
    ],
)
def test_bedrock_exceptions_map_to_anthropic_errors(
    name: str, status: int, error_type: str
) -> None:
    assert bedrock_exception_to_anthropic(name, "boom") == (
        status,
        {"type": "error", "error": {"type": error_type, "message": "boom"}},
    )


# --- event stream → SSE ---------------------------------------------------------------------

REPLIES = [
    Reply(),
    scenario_by_name("tool_bash").reply,
    scenario_by_name("thinking").reply,
    Reply(
        blocks=[
            TextBlock("héllo \u2028 wörld", chunks=4),
            ToolUseBlock("Read", {"p": "/x"}, id="toolu_1"),
        ],
        usage=FakeUsage(cache_read_input_tokens=2048, cache_creation_5m=512, cache_creation_1h=256),
        pings=False,
    ),
    Reply(blocks=[ThinkingBlock("hmm", chunks=1)], model="claude-opus-4-8", message_id="msg_x"),
]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(range(len(REPLIES))),
    st.integers(1, 9),
    st.lists(st.integers(0, 10**6), max_size=40),
)
def test_decoder_rebuilds_the_first_party_sse_from_any_chunking(
    index: int, n: int, cuts: list[int]
) -> None:
    reply = REPLIES[index]
    wire = b"".join(stream_frames(reply, model=SONNET, n=n))
    decoder = EventStreamToSSE()
    out = b"".join(decoder.feed(piece) for piece in _split(wire, cuts)) + decoder.finish()
    assert out == b"".join(stream_events(reply, model=SONNET, n=n))
    assert decoder.invocation_metrics == invocation_metrics(reply)
    assert decoder.error is None and not decoder.truncated


def test_without_stripping_message_stop_is_forwarded_as_bedrock_sent_it() -> None:
    frames = stream_frames(Reply(), model=SONNET, n=1)
    decoder = EventStreamToSSE(strip_invocation_metrics=False)
    out = decoder.feed(b"".join(frames))
    last = out.split(b"\n\n")[-2]
    sent = base64.b64decode(orjson.loads(_decode_one(frames[-1]).payload)["bytes"])
    assert last == b"event: message_stop\ndata: " + sent
    assert b'"amazon-bedrock-invocationMetrics":{"inputTokenCount":25' in last
    assert decoder.invocation_metrics == invocation_metrics(Reply())


def _decode_one(frame: bytes) -> Any:
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    messages = list(buffer)
    assert len(messages) == 1
    return messages[0]


def test_encoder_round_trips_through_botocore() -> None:
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    message = _decode_one(encode_frame(headers, b'{"bytes":"e30="}'))
    assert message.headers == headers
    assert message.payload == b'{"bytes":"e30="}'
    assert message.to_response_dict()["status_code"] == 200
    empty = _decode_one(encode_frame({}, b""))
    assert (empty.headers, empty.payload) == ({}, b"")


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [
        ("throttlingException", "rate_limit_error"),
        ("serviceUnavailableException", "overloaded_error"),
        ("internalServerException", "api_error"),
        ("modelStreamErrorException", "api_error"),
        ("validationException", "invalid_request_error"),
        ("modelTimeoutException", "timeout_error"),
    ],
)
def test_exception_frames_become_sse_error_events(exception: str, error_type: str) -> None:
    frames = [
        *stream_frames(Reply(), model=SONNET, n=1)[:3],
        exception_frame(exception, "Slow down"),
    ]
    decoder = EventStreamToSSE()
    out = decoder.feed(b"".join(frames)) + decoder.finish()
    events = stream_events(Reply(), model=SONNET, n=1)
    error = {"type": "error", "error": {"type": error_type, "message": "Slow down"}}
    assert out == b"".join(events[:3]) + sse_event("error", error)
    assert decoder.error is not None and decoder.error[1] == error


def test_error_frames_and_model_stream_errors() -> None:
    headers = {
        ":message-type": "error",
        ":error-code": "ThrottlingException",
        ":error-message": "Rate exceeded",
    }
    decoder = EventStreamToSSE()
    assert decoder.feed(encode_frame(headers, b"")) == sse_event(
        "error",
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate exceeded"}},
    )
    exc = {":message-type": "exception", ":exception-type": "modelStreamErrorException"}
    payload = orjson.dumps(
        {"message": "Model failed", "originalStatusCode": 529, "originalMessage": "Overloaded"}
    )
    out = decoder.feed(encode_frame(exc, payload))
    assert b'"message":"Model failed (Overloaded)"' in out and b'"type":"api_error"' in out


def test_truncated_and_corrupt_streams_raise() -> None:
    wire = b"".join(stream_frames(Reply(), model=SONNET, n=1))
    decoder = EventStreamToSSE()
    decoder.feed(wire[:-1])
    with pytest.raises(ProviderError, match="ended inside a frame"):
        decoder.finish()
    assert decoder.truncated
    corrupt = bytearray(chunk_frame(b'{"type":"ping"}'))
    corrupt[-5] ^= 0xFF  # a payload byte: the message CRC no longer matches
    with pytest.raises(ProviderError, match="corrupt"):
        EventStreamToSSE().feed(bytes(corrupt))


def test_padding_unknown_events_and_multiline_json() -> None:
    decoder = EventStreamToSSE()
    other = encode_frame({":message-type": "event", ":event-type": "metadata"}, b"{}")
    pretty = b'{\n  "type": "ping"\n}'
    out = decoder.feed(
        other + chunk_frame(pretty, padding="abcdef") + chunk_frame(b'{"type":"ping"}')
    )
    assert out == b'event: ping\ndata: {"type":"ping"}\n\n' * 2
    assert decoder.frames == 3
    with pytest.raises(ProviderError, match="unreadable"):
        decoder.feed(
            encode_frame({":message-type": "event", ":event-type": "chunk"}, b'{"bytes":"%%"}')
        )
