"""SubagentLinks: a hint-less subagent's requests find the turn that started them; bounded."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from sluice.base.usage import ResponseFacts, ToolCall
from sluice.streaming.tap import AnthropicFactsObserver, StreamTap
from sluice.telemetry.subagents import SubagentLinks, first_user_text
from sluice.telemetry.turns import detect_turn

REMINDER = {"type": "text", "text": "<system-reminder>\ncontext\n</system-reminder>\n"}


def _messages(*items: object) -> bytes:
    return orjson.dumps(list(items))


def _user(*blocks: object) -> dict[str, object]:
    return {"role": "user", "content": list(blocks)}


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


MAIN_OPEN = _messages(_user(REMINDER, _text("delegate please")))
CALL = {
    "role": "assistant",
    "content": [
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "Agent",
            "input": {"description": "d", "prompt": "Find X.", "subagent_type": "Explore"},
        }
    ],
}
RESULT = _user(
    {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [_text("Async agent launched successfully.\nagentId: a1b2c3 (use SendMessage)")],
    }
)
SUB_OPEN = _messages(_user(REMINDER, _text("Find X.")))


def _call(name: str, launch: dict[str, object] | None = None) -> ToolCall:
    """A tool call as the relay kept it (the input only for subagent launches)."""
    return ToolCall("toolu_1", name, "tool_use", 0.0, orjson.dumps(launch) if launch else None)


def _main_turn(messages: bytes = MAIN_OPEN, session: str = "s1"):  # type: ignore[no-untyped-def]
    return detect_turn(messages, session, "req")


def test_agent_id_links_to_the_pending_parent() -> None:
    links = SubagentLinks()
    main = _main_turn()
    assert links.link("s1", "a1b2c3", SUB_OPEN, 0.0) is None  # nothing pending yet
    links.observe("s1", main, [_call("Agent")], 1.0)
    parent = links.link("s1", "a1b2c3", SUB_OPEN, 2.0)
    assert parent is not None and parent.trace_id == main.trace_id
    assert parent.root_span_id == main.root_span_id and parent.agent_type is None
    sub = detect_turn(SUB_OPEN, "s1", "r2", parent=parent, agent_id="a1b2c3")
    assert sub.trace_id == main.trace_id and sub.caller_span_id == main.root_span_id
    assert sub.turn_key != main.turn_key and sub.opens
    assert links.link("s2", "a1b2c3", SUB_OPEN, 2.0) is None  # another session
    assert links.link("s1", None, SUB_OPEN, 2.0) is None  # no id, no learnt prompt


def test_a_request_with_no_subagent_call_links_nothing_and_hashes_nothing() -> None:
    """The gateway's common case: no span id of the turn is hashed for it (the span sink does
    that), and no table grows."""
    links = SubagentLinks()
    main = _main_turn()
    links.observe("s1", main, [_call("Bash")], 1.0)
    assert len(links) == 0
    assert "root_span_id" not in vars(main)
    links.observe("s1", main, [_call("Agent")], 1.0)
    assert len(links) == 1 and "root_span_id" in vars(main)


def test_the_tool_result_teaches_prompt_type_and_agent_id() -> None:
    links = SubagentLinks()
    main = _main_turn()
    after = detect_turn(
        _messages(_user(REMINDER, _text("delegate please")), CALL, RESULT), "s1", "r"
    )
    links.observe("s1", after, [], 1.0)
    by_id = links.link("s1", "a1b2c3", _messages(_user(_text("other"))), 2.0)
    assert by_id is not None and by_id.agent_type == "Explore"
    assert by_id.trace_id == main.trace_id
    by_prompt = links.link("s1", None, SUB_OPEN, 2.0)  # a CLI that sends no agent id
    assert by_prompt == by_id
    assert links.link("s1", None, _messages(_user(_text("Find Y."))), 2.0) is None


def test_a_subagents_later_requests_keep_its_spans() -> None:
    links = SubagentLinks()
    main = _main_turn()
    links.observe("s1", main, [_call("Task")], 1.0)
    parent = links.link("s1", "a9", SUB_OPEN, 2.0)
    assert parent is not None
    opening = detect_turn(SUB_OPEN, "s1", "r", parent=parent, agent_id="a9")
    call = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t2", "name": "Bash", "input": {}}],
    }
    loop = _messages(
        _user(REMINDER, _text("Find X.")), call, _user({"type": "tool_result", "tool_use_id": "t2"})
    )
    later = detect_turn(loop, "s1", "r", parent=links.link("s1", "a9", loop, 3.0), agent_id="a9")
    assert later.turn_key == opening.turn_key and not later.opens
    assert later.tool_results[0].asked_at_messages == 1


def test_entries_expire_and_tables_stay_bounded() -> None:
    links = SubagentLinks(max_entries=3, ttl_s=10.0)
    main = _main_turn()
    links.observe("s1", main, [_call("Agent")], 0.0)
    assert links.link("s1", "a", SUB_OPEN, 11.0) is None  # expired
    for n in range(50):
        links.observe(f"s{n}", main, [_call("Agent")], 20.0)
        links.link(f"s{n}", f"a{n}", SUB_OPEN, 20.0)
    assert len(links) <= 3 * 4
    links.observe("late", main, [_call("Agent")], 100.0)
    assert len(links) == 1  # the expired ones went with the insert


def test_hostile_tool_inputs_and_results_are_ignored() -> None:
    links = SubagentLinks()
    for content, tool_input in [
        ("agentId: " + "x" * 100_000, "not an object"),
        ([1, 2, {"type": "text"}], {"prompt": 3, "subagent_type": ["x"]}),
        ("a" * 200_000 + "agentId: late", {"prompt": "p" * 100_000}),
    ]:
        call = {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "Agent", "input": tool_input}],
        }
        result = _user({"type": "tool_result", "tool_use_id": "t", "content": content})
        turn = detect_turn(_messages(_user(_text("go")), call, result), "s", "r")
        links.observe("s", turn, [], 0.0)
    assert links.link("s", "late", SUB_OPEN, 0.0) is None
    assert links.link("s", None, _messages(_user(_text("p" * 100_000))), 0.0) is None


def test_first_user_text() -> None:
    assert first_user_text(SUB_OPEN) == "Find X."
    assert first_user_text(_messages({"role": "user", "content": "plain"})) == "plain"
    assert first_user_text(_messages(_user(REMINDER))) is None
    assert first_user_text(b"[]") is None and first_user_text(None) is None
    assert first_user_text(b"[not json") is None
    assert first_user_text(_messages(42)) is None


@given(
    prompt=st.text(min_size=1, max_size=200).filter(lambda t: not t.lstrip().startswith("<")),
    as_string=st.booleans(),
    reminders=st.integers(0, 2),
)
def test_a_learnt_prompt_matches_whatever_shape_the_subagent_sends_it_in(
    prompt: str, as_string: bool, reminders: int
) -> None:
    call = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t", "name": "Task", "input": {"prompt": prompt}}],
    }
    turn = detect_turn(
        _messages(_user(_text("go")), call, _user({"type": "tool_result", "tool_use_id": "t"})),
        "s",
        "r",
    )
    links = SubagentLinks()
    links.observe("s", turn, [], 0.0)
    if as_string and not reminders:
        opening = _messages({"role": "user", "content": prompt})
    else:
        opening = _messages(_user(*[REMINDER] * reminders, _text(prompt)))
    found = links.link("s", None, opening, 1.0)
    assert found is not None and found.trace_id == turn.trace_id


def test_a_launch_seen_in_the_response_names_the_subagent_before_it_runs() -> None:
    """2.1.197 blocks on its subagent: the tool result comes after the subagent's requests,
    so its type must be learnt from the launch the relay saw in the response."""
    links = SubagentLinks()
    main = _main_turn()
    launch = {"description": "d", "prompt": "Find X.", "subagent_type": "Explore"}
    links.observe("s1", main, [_call("Agent", launch)], 1.0)
    parent = links.link("s1", None, SUB_OPEN, 2.0)  # no agent id: matched by its prompt
    assert parent is not None and parent.trace_id == main.trace_id
    assert parent.agent_type == "Explore"


def _sse(name: str, payload: dict[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def test_the_relay_keeps_a_streamed_launch_input_and_no_other() -> None:
    launch = {"description": "d", "prompt": "Find X.", "subagent_type": "Explore"}
    text = orjson.dumps(launch).decode()
    stream = [
        _sse(
            "content_block_start",
            {
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t0", "name": "Bash", "input": {}},
            },
        ),
        _sse(
            "content_block_delta",
            {"index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"command":"ls"}'}},
        ),
        _sse("content_block_stop", {"index": 0}),
        _sse(
            "content_block_start",
            {
                "index": 1,
                "content_block": {"type": "tool_use", "id": "t1", "name": "Agent", "input": {}},
            },
        ),
        *[
            _sse(
                "content_block_delta",
                {
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": text[i : i + 7]},
                },
            )
            for i in range(0, len(text), 7)
        ],
        _sse("content_block_stop", {"index": 1}),
    ]
    facts = ResponseFacts.empty()
    tap = StreamTap([AnthropicFactsObserver(facts)])
    raw = b"".join(stream)
    for i in range(0, len(raw), 13):  # any chunking
        tap.feed(raw[i : i + 13])
    bash, agent = facts.tool_calls or []
    assert bash.input is None  # only subagent launches are kept
    assert agent.input is not None and orjson.loads(agent.input) == launch
    whole = ResponseFacts.empty()
    whole.apply_message(
        {"content": [{"type": "tool_use", "id": "t1", "name": "Task", "input": launch}]}
    )
    assert whole.tool_calls and orjson.loads(whole.tool_calls[0].input or b"") == launch
