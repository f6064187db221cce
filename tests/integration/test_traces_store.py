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


async def test_the_sinks_span_writes_upsert_every_span_once(engine: AsyncEngine) -> None:
    """``write_spans`` (the span sink's path: the stdlib driver in fixed statement shapes on a
    SQLite file, SQLAlchemy elsewhere) stores exactly what ``span_row`` says, for batches of
    any length, and a re-emitted span replaces its row."""
    from sqlalchemy import func, select

    from sluice.store.tables import trace_spans
    from sluice.store.traces_repo import span_row
    from sluice.telemetry.spans import SpanRecord

    def record(i: int, **extra: Any) -> SpanRecord:
        fields: dict[str, Any] = {
            "trace_id": 0xABC,
            "span_id": i + 1,
            "parent_id": None if i == 0 else 1,
            "name": f"chat m{i}",
            "kind": "client",
            "start_ns": 1_000_000_000 + i,
            "end_ns": 2_000_000_000 + i,
            "attributes": {"gen_ai.request.model": "m", "n": i},
            "session_id": "s1",
            "key_id": "KEY1",
            "request_id": f"req_{i}",
            "input_tokens": i,
            "cost_micros": None if i % 2 else i * 10,
        }
        fields.update(extra)
        return SpanRecord(**fields)

    repo = TracesRepo(engine)
    try:
        n = 0
        for size in (1, 3, 517):  # odd lengths: several statement shapes per batch
            await repo.write_spans([record(n + i) for i in range(size)])
            n += size
        again = record(5, name="chat retried", output_tokens=9, error="overloaded_error")
        await repo.write_spans([again])
        async with engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(trace_spans))
            rows = {
                r["span_id"]: dict(r)
                for r in (await conn.execute(select(trace_spans))).mappings().all()
            }
    finally:
        await repo.close()
    assert count == n == 521
    assert rows[f"{6:016x}"] == span_row(again)  # replaced, not duplicated
    assert rows[f"{7:016x}"] == span_row(record(6))
    assert rows[f"{1:016x}"]["parent_span_id"] is None
