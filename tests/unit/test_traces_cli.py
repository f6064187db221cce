"""`sluice traces`: costs that are unknown say so; cache writes are shown next to reads."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.cli.traces_cmd import _label, _turn_cost


def _turn(cost: int, calls: int, unpriced: int) -> dict[str, Any]:
    return {"cost_micros": cost, "model_calls": calls, "unpriced_calls": unpriced}


def test_turn_cost_is_unknown_when_no_call_was_priced() -> None:
    assert _turn_cost(_turn(0, 2, 2)) == "unknown"
    assert _turn_cost(_turn(1500, 3, 1)) == "0.001500 (+1 unpriced)"
    assert _turn_cost(_turn(1500, 3, 0)) == "0.001500"


def _chat(cost: int | None, **attrs: object) -> dict[str, Any]:
    return {
        "name": "chat claude-opus-4-8",
        "start_ns": 0,
        "end_ns": 2_000_000,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_micros": cost,
        "request_id": "req_1",
        "error": None,
        "attributes": orjson.dumps(attrs).decode(),
    }


def test_chat_span_shows_cache_reads_and_writes_and_unknown_cost() -> None:
    label = _label(
        _chat(
            None,
            **{
                "gen_ai.usage.cache_read.input_tokens": 100,
                "gen_ai.usage.cache_creation.input_tokens": 40,
            },
        )
    )
    assert "cache read 100" in label and "cache write 40" in label
    assert "cost unknown" in label and "$0.000000" not in label
    assert "$0.000350" in _label(_chat(350))
