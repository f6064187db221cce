"""The body peek's guards: duplicate members, nesting depth, identifier length (issue #11)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.base.json_spans import duplicate_member, may_spell, spellings
from sluice.base.text import MAX_IDENTIFIER_CHARS
from sluice.core.body_edit import strip_cache_control
from sluice.core.context import RequestContext
from sluice.core.peek import check_tools, last_message, peek_messages_body
from sluice.errors import InvalidRequest

from support import fixture_names, fixture_request


def ctx_for(body: bytes) -> RequestContext:
    return RequestContext("r", "messages", "/v1/messages", "", [], 0.0, 0, body, body)


def refusal(body: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        peek_messages_body(ctx_for(body))
    return info.value


MSGS = '"messages":[{"role":"user","content":"hi"}]'


@pytest.mark.parametrize(
    ("body", "member"),
    [
        ('{"model":"a","model":"b",' + MSGS + "}", "model"),
        ('{"model":"a",' + MSGS + ',"mcp_servers":[],"mcp_servers":[{"name":"x"}]}', "mcp_servers"),
        ('{"model":"a",' + MSGS + ',"stream":false,"stream":true}', "stream"),
        ('{"model":"a",' + MSGS + "," + MSGS + "}", "messages"),
        ('{"model":"a",' + MSGS + ',"tools":[],"tools":[]}', "tools"),
        ('{"model":"a",' + MSGS + ',"system":"x","system":"y"}', "system"),
        ('{"model":"a",' + MSGS + ',"tool_choice":{},"tool_choice":{}}', "tool_choice"),
        ('{"model":"a",' + MSGS + ',"max_tokens":1,"max_tokens":9}', "max_tokens"),
        ('{"model":"a",' + MSGS + ',"metadata":{},"metadata":{}}', "metadata"),
        # an escaped key is the same key once decoded
        ('{"model":"a","mod\\u0065l":"b",' + MSGS + "}", "model"),
        # whitespace between tokens (the exact scan, not the compact fast check)
        ('{ "model" : "a" , "model" : "b" , ' + MSGS + " }", "model"),
        ('{\n  "model": "a",\n  ' + MSGS.replace(":", ": ") + ',\n  "model": "a"\n}', "model"),
        ('{"model":"a",' + MSGS + ',"metadata":{"user_id":"1","user_id":"2"}}', "metadata.user_id"),
        (
            '{"model":"a",' + MSGS + ',"mcp_servers":[{"name":"ok","url":"u","name":"github"}]}',
            "mcp_servers[0].name",
        ),
    ],
)
def test_duplicate_members_are_refused_naming_the_member(body: str, member: str) -> None:
    err = refusal(body.encode())
    assert err.param == member
    assert member in err.message and "more than once" in err.message


@pytest.mark.parametrize(
    "body",
    [
        '{"model":"a",' + MSGS + "}",
        '{ "model" : "a" , ' + MSGS + " }",
        '{"model":"a",' + MSGS + ',"x":{"k":1,"k":2}}',  # unread nested members pass untouched
        '{"model":"a","mod\\u0065l2":"b",' + MSGS + "}",
    ],
)
def test_bodies_without_judged_duplicates_pass(body: str) -> None:
    ctx = ctx_for(body.encode())
    peek_messages_body(ctx)
    assert ctx.model_requested == "a"


def test_duplicate_member_fast_and_exact_paths_agree() -> None:
    assert duplicate_member(b'{"a":1,"b":2}') is None
    assert duplicate_member(b'{"a":1,"a":1}') == "a"
    assert duplicate_member(b'{ "a" : [1, 2] , "b" : {"a": 1, "a": 2} }') is None
    assert duplicate_member(b'{ "a" : [1, 2] , "a" : [1, 2] }') == "a"
    assert duplicate_member(b"{}") is None


@pytest.mark.parametrize("endpoint", ["messages", "count_tokens"])
@pytest.mark.parametrize("where", ["messages", "other"])
@pytest.mark.parametrize("depth", [1_100, 5_000, 100_000])
def test_deep_nesting_is_a_400(endpoint: str, where: str, depth: int) -> None:
    nest = "[" * depth + "]" * depth
    if where == "messages":
        body = '{"model":"a","messages":[' + nest + "]}"
    else:
        body = '{"model":"a",' + MSGS + ',"x":' + nest + "}"
    ctx = ctx_for(body.encode())
    ctx.endpoint = endpoint
    with pytest.raises(InvalidRequest) as info:
        peek_messages_body(ctx)
    assert "nested" in info.value.message


def test_nesting_well_above_claude_codes_passes() -> None:
    inner = "[" * 300 + "]" * 300
    body = '{"model":"a","messages":[{"role":"user","content":' + inner + "}]}"
    peek_messages_body(ctx_for(body.encode()))


def test_claude_code_bodies_pass_the_guards() -> None:
    for name in fixture_names():
        _, raw = fixture_request(name)
        data = json.loads(raw) if raw else None
        if not isinstance(data, dict) or "messages" not in data:
            continue
        ctx = ctx_for(raw)
        peek_messages_body(ctx)
        assert ctx.model_requested == data["model"]


def test_a_1mb_model_is_refused_with_a_small_echo() -> None:
    body = ('{"model":"' + "m" * 1_000_000 + '",' + MSGS + "}").encode()
    err = refusal(body)
    assert err.param == "model"
    assert len(err.message) < 400
    assert str(MAX_IDENTIFIER_CHARS) in err.message


def test_a_long_session_id_is_truncated() -> None:
    user_id = json.dumps({"session_id": "s" * 5000})
    body = json.dumps({"model": "a", "messages": [], "metadata": {"user_id": user_id}})
    ctx = ctx_for(body.encode())
    peek_messages_body(ctx)
    assert ctx.session_id is not None and len(ctx.session_id) <= MAX_IDENTIFIER_CHARS


def test_cache_strip_refuses_a_repeated_cache_control() -> None:
    block: dict[str, Any] = {"type": "text", "text": "x"}
    raw = json.dumps({"model": "a", "messages": [{"role": "user", "content": [block]}]})
    twice = raw.replace('"text": "x"', '"cache_control": {}, "text": "x", "cache_control": {}')
    with pytest.raises(InvalidRequest) as info:
        strip_cache_control(twice.encode())
    assert "cache_control" in info.value.message
    content_twice = raw.replace('"role": "user"', '"content": "a", "role": "user"')
    with pytest.raises(InvalidRequest):
        strip_cache_control(content_twice.encode())


def test_duplicate_check_is_cheap_on_pretty_printed_bodies() -> None:
    _, raw = fixture_request("10-tool-loop-turn1.json")
    pretty = json.dumps(json.loads(raw), indent=2).encode()
    started = time.perf_counter()
    for _ in range(20):
        peek_messages_body(ctx_for(pretty))
    assert (time.perf_counter() - started) / 20 < 0.01


BAD_UTF8 = b"\xed\xa0\x80"  # a CESU-encoded surrogate: the first pass skips it undecoded


@pytest.mark.parametrize("where", ["metadata", "mcp_servers", "tools", "last message"])
def test_bytes_that_are_not_utf8_in_a_nested_key_are_a_400(where: str) -> None:
    obj = b'{"k' + BAD_UTF8 + b'":1}'
    msgs = b'[{"role":"user","content":[' + obj + b"]}]" if where == "last message" else b"[]"
    body = b'{"model":"a","messages":' + msgs
    if where in ("metadata", "tools", "mcp_servers"):
        body += b',"' + where.encode() + b'":' + (obj if where == "metadata" else b"[" + obj + b"]")
    body += b"}"
    ctx = ctx_for(body)
    with pytest.raises(InvalidRequest) as info:
        peek_messages_body(ctx)
        check_tools(ctx.body)
        last_message(ctx)
    assert "not valid JSON" in info.value.message


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("no link here", False),
        ("see https://example.com", True),
        ("\\u0068ttps://example.com", True),  # an escape can spell the letters
        ("h\\u0074tps://example.com", True),
        ("caf\\u00e9 \\u2019 no link", False),  # an escape of another character cannot
        ('line\\nbreak \\/ slash \\" quote', False),  # other escapes cannot
    ],
)
def test_last_message_is_parsed_only_when_it_can_spell_the_letters(text: str, parsed: bool) -> None:
    body = '{"model":"a","messages":[{"role":"user","content":"' + text + '"}]}'
    ctx = ctx_for(body.encode())
    peek_messages_body(ctx)
    message = last_message(ctx, spellings(b"http"))
    assert (message is not None) is parsed
    if parsed:
        assert "ttps://example.com" in message["content"]
    assert last_message(ctx) is not None  # without letters: always parsed


def test_a_repeat_that_cannot_hold_the_letters_is_not_judged() -> None:
    # No string in it can hold a URL under either reading: the URL scan reads nothing.
    body = '{"model":"a","messages":[{"role":"user","content":"a","content":"b"}]}'
    ctx = ctx_for(body.encode())
    peek_messages_body(ctx)
    assert last_message(ctx, spellings(b"http")) is None
    with pytest.raises(InvalidRequest):
        last_message(ctx)


_CHARS = st.text(alphabet=st.sampled_from('htpHTPs:/ é\\"\n'), max_size=15)


@settings(max_examples=300, deadline=None)
@given(_CHARS, _CHARS, st.data())
def test_text_that_holds_the_letters_is_always_spelled(
    before: str, after: str, data: st.DataObject
) -> None:
    # However the JSON spells each character (as is, or as a \u escape in either case),
    # text holding "http" is never judged unable to hold it.
    text = before + "http" + after
    spelled = []
    for char in text:
        if data.draw(st.booleans()):
            form = "\\u%04x" if data.draw(st.booleans()) else "\\u%04X"
            spelled.append(form % ord(char))
        else:
            spelled.append(json.dumps(char)[1:-1])
    raw = ('"' + "".join(spelled) + '"').encode()
    assert json.loads(raw) == text
    assert may_spell(raw, spellings(b"http"))
