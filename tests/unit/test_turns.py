"""Turn grouping and deterministic ids (telemetry/turns.py): pure, from captured Claude Code
requests and hand-built histories."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sluice.core.context import RequestContext
from sluice.core.peek import last_message, peek_messages_body
from sluice.telemetry.request_headers import (
    agent_name,
    parse_tool_durations,
    parse_traceparent,
    session_of,
)
from sluice.telemetry.turns import NO_HINTS, Hints, Turn, detect_turn, span_id

from support import fixture_request

SESSION = "7c04dda7-18fb-47f7-8946-fcc37dbc4279"


def raw(messages: list[dict[str, Any]]) -> msgspec.Raw:
    return msgspec.Raw(orjson.dumps(messages))


def fixture_messages(name: str) -> msgspec.Raw:
    _, body = fixture_request(name)
    return msgspec.Raw(orjson.dumps(json.loads(body)["messages"]))


def user(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text, **extra}]}


def assistant_tool(tool_id: str, name: str = "Bash") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "running it"},
            {"type": "tool_use", "id": tool_id, "name": name, "input": {"command": "ls"}},
        ],
    }


def tool_result(tool_id: str, *, is_error: bool = False) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": tool_id, "content": "ok", "is_error": is_error}
    return {"role": "user", "content": [block, {"type": "text", "text": "<system-reminder>x"}]}


def test_captured_tool_loop_is_one_turn_despite_moved_cache_control() -> None:
    # Claude Code moves `cache_control` from the prompt to the tool_result between the two.
    first = detect_turn(fixture_messages("10-tool-loop-turn1.json"), SESSION, "req_1")
    second = detect_turn(fixture_messages("11-tool-loop-turn2-tool_result.json"), SESSION, "req_2")
    assert first.trace_id == second.trace_id
    assert first.root_span_id == second.root_span_id
    assert first.opens and not second.opens
    assert first.opening_index == second.opening_index == 0
    assert (first.message_count, second.message_count) == (2, 4)
    assert first.chat_span_id != second.chat_span_id
    [result] = second.tool_results
    assert (result.tool_use_id, result.name, result.is_error) == (
        "toolu_mock_4c9d3a5da2be40e3",
        "Bash",
        False,
    )
    # The tool span's parent is the chat span of the request that received the tool_use.
    assert result.asked_at_messages == 2
    assert second.chat_span_for(result.asked_at_messages) == first.chat_span_id
    assert first.tool_results == ()


def test_is_error_tool_result_is_read() -> None:
    second = detect_turn(fixture_messages("13-tool-denied-turn2-is_error.json"), SESSION, "r")
    [result] = second.tool_results
    assert result.is_error is True and result.name == "Bash"


def test_second_user_prompt_opens_a_new_turn() -> None:
    history = [user("list files"), assistant_tool("t1"), tool_result("t1")]
    in_turn = detect_turn(raw(history), "s", "r1")
    history += [{"role": "assistant", "content": [{"type": "text", "text": "done"}]}]
    next_prompt = detect_turn(raw([*history, user("now delete them")]), "s", "r2")
    assert next_prompt.opens
    assert next_prompt.opening_index == 4
    assert next_prompt.trace_id != in_turn.trace_id
    # The same words at another position are another turn, too.
    again = detect_turn(raw([*history, user("list files")]), "s", "r3")
    assert again.trace_id not in (in_turn.trace_id, next_prompt.trace_id)


def test_tool_result_only_last_message_continues_the_turn() -> None:
    opening = detect_turn(raw([user("go", cache_control={"type": "ephemeral"})]), "s", "a")
    history = [user("go"), assistant_tool("t1"), tool_result("t1")]
    step2 = detect_turn(raw(history), "s", "b")
    history += [assistant_tool("t2", "Read"), tool_result("t2", is_error=True)]
    step3 = detect_turn(raw(history), "s", "c")
    assert opening.trace_id == step2.trace_id == step3.trace_id
    assert not step2.opens and not step3.opens
    [r3] = step3.tool_results
    assert (r3.tool_use_id, r3.name, r3.is_error, r3.asked_at_messages) == ("t2", "Read", True, 3)
    assert step3.chat_span_for(3) == step2.chat_span_id
    # Ids are well-formed: 128-bit trace, 64-bit spans, never zero.
    assert 0 < opening.trace_id < 2**128 and 0 < opening.root_span_id < 2**64
    assert len({opening.root_span_id, opening.chat_span_id, step2.tool_span_id("t1")}) == 3


def test_a_messages_role_is_read_whole_whatever_comes_first() -> None:
    """A message's role is its whole object's: one whose "role" is not its first member is
    read like any other, and a later duplicate "role" wins over one that opens it."""
    history = [user("first"), {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]
    canonical = detect_turn(raw([*history, user("second")]), "s", "r")
    assert canonical.opening_index == 2
    encoded = orjson.dumps(history)[:-1]
    second = orjson.dumps(user("second")["content"]).decode()
    reordered = msgspec.Raw(encoded + f',{{"content":{second},"role":"user"}}]'.encode())
    assert detect_turn(reordered, "s", "r") == canonical
    duplicate = f',{{"role":"user","content":{second},"role":"assistant"}}]'.encode()
    relabelled = detect_turn(msgspec.Raw(encoded + duplicate), "s", "r")
    assert relabelled.opening_index == 0 and relabelled.opens


def test_same_history_in_another_session_is_another_trace() -> None:
    history = raw([user("hello")])
    assert detect_turn(history, "s1", "r").trace_id != detect_turn(history, "s2", "r").trace_id
    # ... and the same session always gives the same ids (any replica, any time).
    assert detect_turn(history, "s1", "x") == detect_turn(history, "s1", "y")


def test_no_session_makes_each_request_its_own_turn() -> None:
    history = raw([user("go"), assistant_tool("t1"), tool_result("t1")])
    a = detect_turn(history, None, "req_a")
    b = detect_turn(history, None, "req_b")
    assert a.opens and b.opens
    assert a.trace_id != b.trace_id
    assert a.tool_results == ()


def test_traceparent_sets_the_trace_and_the_roots_parent() -> None:
    header = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    caller = parse_traceparent(header)
    assert caller == (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7)
    turn = detect_turn(raw([user("hi")]), "s", "r", caller)
    assert turn.trace_id == caller[0]
    assert turn.caller_span_id == caller[1]
    assert turn.root_span_id == detect_turn(raw([user("hi")]), "s", "r").root_span_id
    for bad in (b"", b"garbage", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01", b"00-zz-yy-01"):
        assert parse_traceparent(bad) is None


def _ctx(headers: list[tuple[bytes, bytes]], body: dict[str, Any]) -> RequestContext:
    ctx = RequestContext("req_x", "messages", "/v1/messages", "", headers, 0.0, 0)
    ctx.body = orjson.dumps(body)
    peek_messages_body(ctx)
    return ctx


def test_the_messages_are_split_once_a_request_for_policy_and_tracing() -> None:
    """URL policy's last-message read and turn detection share one split of ``messages``
    (on a long history it costs as much as the body peek), and a turn found from the split
    elements is the turn found from the raw array."""
    messages = [user("fix it"), assistant_tool("toolu_1"), tool_result("toolu_1")]
    ctx = _ctx([], {"model": "m", "messages": messages})
    items = ctx.message_items()
    assert len(items) == 3 and ctx.message_items() is items
    assert last_message(ctx) == orjson.loads(bytes(items[-1]))
    assert ctx.message_items() is items
    from_items = detect_turn(items, SESSION, "r")
    from_raw = detect_turn(ctx.messages_raw, SESSION, "r")
    assert (from_items.turn_key, from_items.tool_results) == (
        from_raw.turn_key,
        from_raw.tool_results,
    )
    assert from_items.message_count == 3 and not from_items.opens


def test_session_sources_in_order() -> None:
    body = {"model": "m", "messages": [user("hi")]}
    meta = {**body, "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "meta-s"})}}
    # X-Claude-Code-Session-Id, then metadata.user_id's session_id (peeked on the request path).
    ctx = _ctx([(b"x-claude-code-session-id", b"hdr-s")], meta)
    assert session_of(ctx.session_id, {}) == "hdr-s"
    ctx = _ctx([], meta)
    assert session_of(ctx.session_id, {b"x-session-affinity": b"aff"}) == "meta-s"
    # Then other clients' session headers.
    ctx = _ctx([], body)
    assert ctx.session_id is None
    assert session_of(None, {b"x-session-affinity": b"aff", b"session-id": b"sid"}) == "aff"
    assert session_of(None, {b"session-id": b"sid"}) == "sid"
    assert session_of(None, {}) is None
    # Every value is the client's: a huge header is cut as the peek cuts Claude Code's own
    # (the session keys per-process tables).
    assert session_of(None, {b"session-id": b"s" * 70_000}) == "s" * 200
    # A metadata.user_id that is not a JSON object is no session.
    ctx = _ctx([], {**body, "metadata": {"user_id": "plain-user"}})
    assert ctx.session_id is None


def test_agent_name() -> None:
    assert agent_name({b"x-langwatch-agent": b"reviewer", b"user-agent": b"claude-cli/2"}) == (
        "reviewer"
    )
    assert agent_name({b"user-agent": b"claude-cli/2.1.197 (external, sdk-cli)"}) == "claude-code"
    assert agent_name({b"user-agent": b"python-httpx/0.27"}) == "unknown"
    assert agent_name({}) == "unknown"


def test_span_id_is_stable_and_nonzero() -> None:
    assert span_id(b"k", b"chat", b"3") == span_id(b"k", b"chat", b"3")
    assert span_id(b"k", b"chat", b"3") != span_id(b"k", b"chat", b"4")


# --- one message, every encoding the CLI has used: one turn --------------------------------

_TEXTS = st.text(min_size=1, max_size=200).filter(lambda t: not t.lstrip().startswith("<system"))


def _encodings(text: str) -> list[bytes]:
    """The same user message as Claude Code has sent it: a plain string (2.1.332, later
    requests), one text block (its first request; 2.1.197), with a moved ``cache_control``
    marker (5-minute or 1-hour), keys in another order, and other JSON spacing."""
    block = {"type": "text", "text": text}
    shapes: list[Any] = [
        text,
        [block],
        [{**block, "cache_control": {"type": "ephemeral"}}],
        [{"cache_control": {"type": "ephemeral", "ttl": "1h"}, "text": text, "type": "text"}],
    ]
    out = [orjson.dumps([{"role": "user", "content": shape}]) for shape in shapes]
    out.append(json.dumps([{"content": [block], "role": "user"}], separators=(", ", ": ")).encode())
    return out


@given(text=_TEXTS)
@settings(max_examples=200, deadline=None)
def test_every_encoding_of_the_opening_message_is_one_turn(text: str) -> None:
    keys = {detect_turn(msgspec.Raw(body), SESSION, "r").turn_key for body in _encodings(text)}
    assert len(keys) == 1


@given(a=_TEXTS, b=_TEXTS)
@settings(max_examples=100, deadline=None)
def test_different_opening_texts_are_different_turns(a: str, b: str) -> None:
    assume(a != b)
    first = detect_turn(raw([{"role": "user", "content": a}]), SESSION, "r")
    second = detect_turn(raw([user(b)]), SESSION, "r")
    assert first.turn_key != second.turn_key


def test_string_then_blocks_tool_loop_is_one_trace() -> None:
    # 2.1.332's tool loop: the prompt as blocks, then (next request) as a string.
    opening = detect_turn(raw([user("list files")]), SESSION, "a")
    history = [
        {"role": "user", "content": "list files"},
        assistant_tool("toolu_1"),
        tool_result("toolu_1"),
    ]
    step = detect_turn(raw(history), SESSION, "b")
    assert step.trace_id == opening.trace_id
    assert not step.opens
    assert [r.name for r in step.tool_results] == ["Bash"]
    assert step.chat_span_for(1) == opening.chat_span_id


def test_an_image_is_part_of_the_turn_key() -> None:
    def image(data: str) -> dict[str, Any]:
        source = {"type": "base64", "media_type": "image/png", "data": data}
        return {
            "role": "user",
            "content": [{"type": "image", "source": source}, user("x")["content"][0]],
        }

    assert (
        detect_turn(raw([image("AAAA")]), SESSION, "r").turn_key
        != detect_turn(raw([image("BBBB")]), SESSION, "r").turn_key
    )


# --- Claude Code's gateway hint headers (CLAUDE_CODE_GATEWAY_HINT_HEADERS=1) -----------------


def test_prompt_id_names_the_turn_whatever_shape_the_message_takes() -> None:
    """2.1.332 sends the opening message as blocks, then as a string: with the prompt id the
    shape never matters (and neither does the text: the id is the turn)."""
    hints = Hints(prompt_id="p-1", request_class="main")
    blocks = detect_turn(raw([user("list files")]), "s", "r1", hints=hints)
    as_string = [{"role": "user", "content": "list files"}, assistant_tool("t1"), tool_result("t1")]
    step2 = detect_turn(raw(as_string), "s", "r2", hints=hints)
    assert blocks.opens and not step2.opens
    assert blocks.trace_id == step2.trace_id and blocks.root_span_id == step2.root_span_id
    assert step2.chat_span_for(1) == blocks.chat_span_id  # the tool's asker is found
    other = detect_turn(raw([user("list files")]), "s", "r3", hints=Hints(prompt_id="p-2"))
    assert other.trace_id != blocks.trace_id


def test_a_subagent_is_its_own_namespace_under_its_parents_root_in_the_same_trace() -> None:
    main = detect_turn(raw([user("review this")]), "s", "r1", hints=Hints(prompt_id="p"))
    sub_hints = Hints(prompt_id="p", request_class="subagent", agent_id="a7")
    sub = detect_turn(raw([user("look at foo.py")]), "s", "r2", hints=sub_hints)
    assert sub.trace_id == main.trace_id
    assert sub.opens and sub.caller_span_id == main.root_span_id
    assert sub.root_span_id != main.root_span_id
    assert sub.chat_span_id != main.chat_span_id  # same message count, no collision
    nested = Hints(prompt_id="p", request_class="subagent", agent_id="a8", parent_agent_id="a7")
    grandchild = detect_turn(raw([user("deeper")]), "s", "r3", hints=nested)
    assert grandchild.caller_span_id == sub.root_span_id


def test_compaction_and_auxiliary_calls_never_open_a_turn() -> None:
    main = detect_turn(raw([user("go")]), "s", "r1", hints=Hints(prompt_id="p"))
    for kind in ("compaction", "auxiliary"):
        side = detect_turn(
            raw([user("summarise the conversation")]),
            "s",
            "r2",
            hints=Hints(prompt_id="p", request_class=kind),
        )
        assert not side.opens
        assert (side.trace_id, side.root_span_id) == (main.trace_id, main.root_span_id)
        assert side.chat_span_id != main.chat_span_id


def test_without_hints_ids_are_unchanged() -> None:
    history = raw([user("hello")])
    assert detect_turn(history, "s", "r") == detect_turn(history, "s", "r", hints=NO_HINTS)


def _captured_turn(name: str, *, hinted: bool = True) -> Any:
    """The turn of a request captured from Claude Code 2.1.332 (scripts/capture_fixtures.py)."""
    headers, body = fixture_request(f"claude-code-2.1.332/{name}")
    lowered = {k.lower(): v for k, v in headers}
    hints = Hints(
        prompt_id=lowered.get("x-claude-code-prompt-id"),
        request_class=lowered.get("x-claude-code-request-class"),
        agent_id=lowered.get("x-claude-code-agent-id"),
        parent_agent_id=lowered.get("x-claude-code-parent-agent-id"),
    )
    messages = msgspec.Raw(orjson.dumps(json.loads(body)["messages"]))
    session = lowered["x-claude-code-session-id"]
    return detect_turn(messages, session, "r", hints=hints if hinted else NO_HINTS)


def test_captured_2_1_332_tool_loop_is_one_turn_with_and_without_hints() -> None:
    for hinted in (True, False):
        first = _captured_turn("02-tool-loop-01.json", hinted=hinted)
        second = _captured_turn("02-tool-loop-02.json", hinted=hinted)
        assert first.opens and not second.opens
        assert first.trace_id == second.trace_id
        [result] = second.tool_results
        assert second.chat_span_for(result.asked_at_messages or 0) == first.chat_span_id


def test_captured_2_1_332_subagent_hangs_under_the_main_turn() -> None:
    main = _captured_turn("04-subagent-01.json")
    sub = _captured_turn("04-subagent-03.json")
    assert sub.trace_id == main.trace_id
    assert sub.opens and sub.caller_span_id == main.root_span_id


def test_tool_durations_hint_is_parsed_bounded_and_used_only_when_unambiguous() -> None:
    assert parse_tool_durations(b"Bash=41, Read=3,bad,=5,X=y") == (("Bash", 41), ("Read", 3))
    assert len(parse_tool_durations(b",".join([b"T=1"] * 500))) == 64
    history = [user("go"), assistant_tool("t1"), tool_result("t1")]
    hints = Hints(prompt_id="p", tool_durations=(("Bash", 41),))
    turn = detect_turn(raw(history), "s", "r", hints=hints)
    assert turn.client_duration_ms("Bash") == 41 and turn.client_duration_ms("Read") is None
    twice = Hints(prompt_id="p", tool_durations=(("Bash", 41), ("Bash", 9)))
    assert detect_turn(raw(history), "s", "r", hints=twice).client_duration_ms("Bash") is None


def test_a_turns_span_ids_are_hashed_once_when_used_and_survive_the_hand_over() -> None:
    """``Turn`` hashes its root and chat span ids on first use and keeps them; they are not
    in the hand-over to the span sink, which decodes the turn (also from a record of an older
    version that carried them) and gets the same ids."""
    turn = Turn(b"key", 7, None, True, 0, 5)
    assert "root_span_id" not in vars(turn)  # nothing hashed until asked
    assert turn.root_span_id == span_id(b"key", b"root")
    assert turn.chat_span_id == turn.chat_span_for(5) == span_id(b"key", b"chat", b"5")
    assert vars(turn)["root_span_id"] == turn.root_span_id  # kept
    encoded = msgspec.json.encode(turn)
    assert b"root_span_id" not in encoded and b"chat_span_id" not in encoded
    decoded = msgspec.json.decode(encoded, type=Turn)
    assert decoded == turn
    assert (decoded.root_span_id, decoded.chat_span_id) == (turn.root_span_id, turn.chat_span_id)
    older = orjson.dumps({**orjson.loads(encoded), "root_span_id": 1, "chat_span_id": 2})
    decoded = msgspec.json.decode(older, type=Turn)
    assert (decoded.root_span_id, decoded.chat_span_id) == (turn.root_span_id, turn.chat_span_id)
