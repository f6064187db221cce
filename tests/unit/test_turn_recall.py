"""A conversation's remembered opening (``turns.Recall``) finds the turn a whole read of the
history finds, for every way a Claude Code history changes between requests, and spares
reading what the previous request had."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.telemetry.history import Recall
from sluice.telemetry.turns import Hints, Turn, detect_turn

SESSION = "5b1f0f8e-recall"
MARK = {"type": "ephemeral"}


def prompt(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def call(n: int) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [
            {"type": "text", "text": f"step {n}"},
            {"type": "tool_use", "id": f"tu_{n}", "name": "Read", "input": {"n": n}},
        ],
    }


def result(n: int, size: int = 40) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": f"tu_{n}", "content": "r" * size}
    return {"role": "user", "content": [block]}


def sent(history: list[dict[str, Any]]) -> msgspec.Raw:
    """The history as Claude Code sends it: the cache marker on the last message only."""
    marked = [dict(m) for m in history]
    last = marked[-1]
    if isinstance(last["content"], list):
        blocks = [dict(b) for b in last["content"]]
        blocks[-1]["cache_control"] = MARK
        last["content"] = blocks
    return msgspec.Raw(orjson.dumps(marked))


def ids(turn: Turn) -> tuple[Any, ...]:
    return (turn.turn_key, turn.trace_id, turn.opens, turn.opening_index, turn.message_count,
            turn.tool_results)  # fmt: skip


def both(history: list[dict[str, Any]], recall: Recall, hints: Hints | None = None) -> Turn:
    """The turn found with ``recall`` (then holding this request's opening), checked against a
    whole read."""
    body = sent(history)
    extra = {"hints": hints} if hints is not None else {}
    whole = detect_turn(body, SESSION, "r", **extra)
    recalled = detect_turn(body, SESSION, "r", **extra, recall=Recall(recall.known))
    assert ids(recalled) == ids(whole)
    detect_turn(body, SESSION, "r", **extra, recall=recall)
    recall.known, recall.learnt = recall.learnt, None
    return whole


def seen_loop(steps: int) -> tuple[list[dict[str, Any]], Recall]:
    """A prompt and ``steps`` tool calls, as a process that has just seen it remembers it."""
    recall = Recall()
    history = [prompt("go")]
    for n in range(steps):
        history += [call(n), result(n)]
    both(history, recall)
    return history, recall


def test_a_long_tool_loop_then_the_next_prompt_are_found_as_a_whole_read_finds_them() -> None:
    recall = Recall()
    history = [prompt("fix the build")]
    first = both(history, recall)
    for n in range(30):
        history += [call(n), result(n)]
        turn = both(history, recall)
        assert (turn.turn_key, turn.opens, turn.opening_index) == (first.turn_key, False, 0)
        assert recall.known is not None and recall.known.index == 0
    history += [{"role": "assistant", "content": "done"}, prompt("now the tests")]
    turn = both(history, recall)
    assert turn.opens and turn.opening_index == len(history) - 1
    history += [call(99), result(99)]
    assert both(history, recall).opening_index == 62


def test_what_the_previous_request_had_is_not_read_again() -> None:
    """The one change recall does not see, as the module says: a message in the middle
    rewritten to user text of the same length. That it goes unseen shows the middle is not
    read; a whole read (a process that never saw the conversation) does see it."""
    history, recall = seen_loop(10)
    rewritten = list(history)
    original = orjson.dumps(history[6])
    text = {"role": "user", "content": [{"type": "text", "text": "z"}]}
    pad = len(original) - len(orjson.dumps(text))
    text["content"][0]["text"] = "z" * (1 + pad)
    assert len(orjson.dumps(text)) == len(original)
    rewritten[6] = text
    rewritten += [call(10), result(10)]
    body = sent(rewritten)
    assert detect_turn(body, SESSION, "r").opening_index == 6
    assert detect_turn(body, SESSION, "r", recall=Recall(recall.known)).opening_index == 0


def test_a_middle_message_that_changes_length_is_read_again() -> None:
    history, recall = seen_loop(10)
    history[6] = prompt("an edit that adds user text")
    history += [call(10), result(10)]
    assert both(history, recall).opening_index == 6


def test_a_shorter_or_rewritten_history_is_read_whole() -> None:
    history, recall = seen_loop(10)
    # Compaction: a summary and fewer messages, then a rewind to an earlier point.
    compacted = [prompt("summary of the work so far"), call(50), result(50)]
    assert both(compacted, recall).opening_index == 0
    rewound = [*history[:5], prompt("do it another way")]
    assert both(rewound, recall).opening_index == 5
    # The same length, another opening message: the opening is checked, not assumed.
    other = [prompt("stop"), *history[1:], call(11), result(11)]
    assert both(other, recall).turn_key != detect_turn(sent(history), SESSION, "r").turn_key


def test_an_opening_that_no_longer_has_user_text_is_not_taken() -> None:
    recall = Recall()
    history = [prompt("first"), {"role": "assistant", "content": "ok"}, prompt("second")]
    for n in range(6):
        history += [call(n), result(n)]
    assert both(history, recall).opening_index == 2
    for replaced in (result(77), {"role": "assistant", "content": "second, said by the model"}):
        changed = [*history[:2], replaced, *history[3:], call(6), result(6)]
        assert both(changed, Recall(recall.known)).opening_index == 0


def test_hinted_turns_and_side_calls_find_what_a_whole_read_finds() -> None:
    recall = Recall()
    history = [prompt("go")]
    hints = Hints(prompt_id="p1", request_class="main")
    for n in range(8):
        history += [call(n), result(n)]
        assert not both(history, recall, hints).opens
    compaction = Hints(prompt_id="p1", request_class="compaction")
    both([*history, prompt("summarize the conversation")], Recall(), compaction)


_STEP = st.sampled_from(["tool", "tool", "tool", "prompt", "reminder", "compact", "edit"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_STEP, st.integers(0, 200)), min_size=1, max_size=40))
def test_any_sequence_of_changes_finds_what_a_whole_read_finds(
    steps: list[tuple[str, int]],
) -> None:
    recall = Recall()
    history = [prompt("start")]
    for n, (step, size) in enumerate(steps):
        if step == "tool":
            history += [call(n), result(n, size)]
        elif step == "prompt":
            history += [{"role": "assistant", "content": "ok"}, prompt(f"next {size}")]
        elif step == "reminder":  # user text Claude Code attaches: not a prompt
            reminder = {"type": "text", "text": "<system-reminder>r</system-reminder>"}
            history += [call(n), {"role": "user", "content": [result(n)["content"][0], reminder]}]
        elif step == "compact":
            history = [prompt(f"summary {size}")]
        elif len(history) > 2:  # edit: a middle message changes, with its length
            at = size % (len(history) - 1)
            history[at] = prompt(f"edited {size}") if size % 2 else result(at, size + 1)
        both(history, recall)
