"""A compaction call without a prompt id joins its session's latest prompt (2.1.332's
`/compact`), and two different compaction calls of one turn are two spans."""

from __future__ import annotations

import orjson

from sluice.telemetry.side_calls import SessionPrompts
from sluice.telemetry.turns import Hints, detect_turn

HISTORY = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]


def _messages(instruction: str) -> bytes:
    return orjson.dumps([*HISTORY, {"role": "user", "content": instruction}])


def test_a_compaction_without_prompt_id_joins_the_sessions_latest_prompt() -> None:
    prompts = SessionPrompts()
    main = prompts.fill("s", Hints(prompt_id="p1", request_class="main"), 0.0)
    opened = detect_turn(orjson.dumps(HISTORY[:1]), "s", "r1", hints=main)
    side = prompts.fill("s", Hints(request_class="compaction"), 1.0)
    assert side.prompt_id == "p1"
    first = detect_turn(_messages("Summarize."), "s", "r2", hints=side)
    again = detect_turn(_messages("Summarize."), "s", "r3", hints=side)
    stricter = detect_turn(_messages("Summarize, TEXT ONLY."), "s", "r4", hints=side)
    assert first.trace_id == opened.trace_id and not first.opens  # opens no turn
    assert first.chat_span_id == again.chat_span_id  # a re-send is the same span
    assert first.chat_span_id != stricter.chat_span_id  # another instruction, another span
    assert first.chat_span_id != opened.chat_span_for(first.message_count)


def test_what_is_not_a_side_call_is_left_alone() -> None:
    prompts = SessionPrompts(max_entries=2, ttl_s=10.0)
    assert prompts.fill("s", Hints(request_class="compaction"), 0.0).prompt_id is None  # unseen
    prompts.fill("s", Hints(prompt_id="p1", request_class="main"), 0.0)
    subagent = Hints(prompt_id="p9", request_class="subagent", agent_id="a1")
    assert prompts.fill("s", subagent, 1.0) is subagent  # a subagent's id is not the session's
    assert prompts.fill("s", Hints(request_class="compaction"), 2.0).prompt_id == "p1"
    assert prompts.fill("s", Hints(request_class="compaction"), 20.0).prompt_id is None  # aged
    for n in range(10):
        prompts.fill(f"s{n}", Hints(prompt_id=f"p{n}", request_class="main"), 30.0)
    assert len(prompts) == 2  # bounded
