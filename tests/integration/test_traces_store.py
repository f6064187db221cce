"""The trace store on every backend (SQLite and PostgreSQL, real servers): upsert on re-emitted
spans, per-turn listing with filters, one trace's spans, the tool-start lookup, pruning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.traces_repo import TracesRepo
from sluice.store.turn_queries import BadCursor, TurnFilter, encode_cursor, turn_details, turn_rows

from services import migrated_engine

T1, T2 = "a" * 32, "b" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(request.param, tmp_path / "traces.db") as eng:
        yield eng


def span(trace: str, span_id: str, name: str, start: int, end: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": None,
        "name": name,
        "kind": "internal",
        "start_ns": start,
        "end_ns": end,
        "session_id": "s1",
        "vk_id": "KEY1",
        "project": "web",
        "agent": "claude-code",
        "request_id": None,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_micros": None,
        "error": None,
        "attributes": "{}",
        "created_at": end // 1_000_000,
    }
    row.update(extra)
    return row


async def test_trace_store_contract(engine: AsyncEngine) -> None:
    repo = TracesRepo(engine)
    starts = orjson.dumps({"toolu_1": 1_500_000_000}).decode()
    chat_attrs = orjson.dumps({"sluice.tool_call_starts": starts}).decode()
    await repo.write(
        [
            span(T1, "0" * 15 + "1", "invoke_agent claude-code", 1_000_000_000, 2_000_000_000),
            span(
                T1,
                "0" * 15 + "2",
                "chat m",
                1_000_000_000,
                2_000_000_000,
                input_tokens=10,
                output_tokens=5,
                cost_micros=100,
                attributes=chat_attrs,
            ),
            span(T1, "0" * 15 + "3", "execute_tool Bash", 1_500_000_000, 3_000_000_000),
            span(
                T2,
                "0" * 15 + "4",
                "chat m",
                9_000_000_000,
                9_500_000_000,
                session_id="s2",
                vk_id="KEY2",
                input_tokens=7,
                error="overloaded_error",
            ),
        ]
    )
    # A re-emitted span (a retried call: same ids) replaces its row.
    await repo.write(
        [
            span(
                T1,
                "0" * 15 + "2",
                "chat m",
                1_000_000_000,
                2_500_000_000,
                input_tokens=11,
                output_tokens=5,
                cost_micros=120,
                attributes=chat_attrs,
            )
        ]
    )
    turns = await turn_rows(engine, TurnFilter())
    assert [t["trace_id"] for t in turns] == [T2, T1]  # newest first
    first = turns[1]
    assert (first["model_calls"], first["tools"], first["errors"]) == (1, 1, 0)
    assert (first["input_tokens"], first["output_tokens"], first["cost_micros"]) == (11, 5, 120)
    assert (first["start_ns"], first["end_ns"]) == (1_000_000_000, 3_000_000_000)
    assert first["agent"] == "claude-code" and first["session_id"] == "s1"
    assert turns[0]["errors"] == 1
    # T2's model call has no price: `traces list` shows its cost as unknown, not $0.
    assert (turns[0]["unpriced_calls"], first["unpriced_calls"]) == (1, 0)
    assert [t["trace_id"] for t in await turn_rows(engine, TurnFilter(session="s2"))] == [T2]
    assert [t["trace_id"] for t in await turn_rows(engine, TurnFilter(key="KEY1"))] == [T1]
    assert await turn_rows(engine, TurnFilter(key="nobody")) == []
    # Filters, keyset pages and the details only the spans tell.
    assert [t["trace_id"] for t in await turn_rows(engine, TurnFilter(agent="claude-code"))] == [T1]
    assert await turn_rows(engine, TurnFilter(project="ops")) == []
    page = await turn_rows(engine, TurnFilter(), limit=1)
    assert [t["trace_id"] for t in page] == [T2]
    rest = await turn_rows(engine, TurnFilter(), limit=1, cursor=encode_cursor(page[0]))
    assert [t["trace_id"] for t in rest] == [T1]
    with pytest.raises(BadCursor):
        await turn_rows(engine, TurnFilter(), cursor="not-a-cursor")
    [detail] = await turn_details(engine, rest)
    assert detail["agent"] == "claude-code" and detail["tools_called"] == ["Bash"]
    assert detail["models"] == [] and detail["first_error"] is None
    assert [s["name"] for s in await repo.spans(T1.upper())] == [
        "invoke_agent claude-code",
        "chat m",
        "execute_tool Bash",
    ]
    assert await repo.tool_start(T1, "0" * 15 + "2", "toolu_1") == 1_500_000_000
    assert await repo.tool_start(T1, "0" * 15 + "2", "toolu_other") is None
    assert await repo.tool_start(T1, "f" * 16, "toolu_1") is None
    # Retention: rows whose created_at (ms) is older than the cutoff go.
    assert await repo.prune(2_600) == 2  # T1's root (2,000 ms) and re-emitted chat (2,500 ms)
    assert [s["name"] for s in await repo.spans(T1)] == ["execute_tool Bash"]
