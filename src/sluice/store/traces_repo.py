"""The local trace store: spans written in batches, pruned by age, read back per turn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.sqlite_batches import BatchInsert, SqliteThread, sqlite_file
from sluice.store.tables import trace_spans


class StoredSpan(Protocol):
    """What the store reads of a span (telemetry's ``SpanRecord`` has it): the store sits
    below telemetry, so it names the shape, not the class."""

    @property
    def trace_hex(self) -> str: ...
    @property
    def span_hex(self) -> str: ...
    @property
    def parent_id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def key_id(self) -> str | None: ...
    @property
    def project(self) -> str | None: ...
    @property
    def agent(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cost_micros(self) -> int | None: ...


_UPDATED = (
    "parent_span_id",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "input_tokens",
    "output_tokens",
    "cost_micros",
    "error",
    "attributes",
    "created_at",
    "request_id",
)


class TracesRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Spans on a SQLite file go in through the stdlib driver on a thread of their own
        # (sqlite_batches.py), opened at the first write: through SQLAlchemy, the store was a
        # third of the span sink's CPU.
        self._path = sqlite_file(engine.dialect.name, engine.url.database)
        self._sqlite: SqliteThread | None = None

    async def write_spans(self, spans: Sequence[StoredSpan]) -> None:
        """Upsert these spans (the span sink's path)."""
        if not spans:
            return
        if self._path is None:
            await self.write([span_row(span) for span in spans])
            return
        if self._sqlite is None:
            self._sqlite = SqliteThread(self._path, "sluice-traces")
        await self._sqlite.run(lambda conn: _SQLITE_UPSERT.run(conn, spans, span_values))

    async def close(self) -> None:
        """Close the span writer's own connection (the engine is the caller's)."""
        if self._sqlite is not None:
            await self._sqlite.close()

    async def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert on (trace_id, span_id): a re-emitted span (a retried call) replaces its row."""
        if not rows:
            return
        insert = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(trace_spans)
        statement = statement.on_conflict_do_update(
            index_elements=["trace_id", "span_id"],
            set_={name: statement.excluded[name] for name in _UPDATED},
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement, list(rows))

    async def prune(self, older_than_ms: int) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(trace_spans).where(trace_spans.c.created_at < older_than_ms)
            )
            return int(result.rowcount or 0)

    async def tool_start(self, trace_id: str, chat_span_id: str, tool_use_id: str) -> int | None:
        """When another replica streamed ``tool_use_id`` (its chat span records it), if that
        span is already in a shared store."""
        async with self._engine.connect() as conn:
            attributes = await conn.scalar(
                select(trace_spans.c.attributes).where(
                    trace_spans.c.trace_id == trace_id, trace_spans.c.span_id == chat_span_id
                )
            )
        if attributes is None:
            return None
        starts = orjson.loads(attributes).get("sluice.tool_call_starts")
        if not isinstance(starts, str):
            return None
        value = orjson.loads(starts).get(tool_use_id)
        return value if isinstance(value, int) else None

    async def trace_ids(self, prefix: str, limit: int = 10) -> list[str]:
        """Trace ids that start with ``prefix`` (hex, so no LIKE wildcard can sneak in)."""
        prefix = prefix.lower()
        if not prefix or any(ch not in "0123456789abcdef" for ch in prefix):
            return []
        c = trace_spans.c
        query = select(c.trace_id).where(c.trace_id.startswith(prefix)).distinct().limit(limit)
        async with self._engine.connect() as conn:
            return [str(r[0]) for r in (await conn.execute(query)).all()]

    async def spans(self, trace_id: str) -> list[dict[str, Any]]:
        c = trace_spans.c
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(trace_spans).where(c.trace_id == trace_id.lower()).order_by(c.start_ns)
            )
            return [dict(r) for r in rows.mappings().all()]


# The table's own column order: ``span_values`` follows it (a test compares the two).
SPAN_COLUMNS = tuple(trace_spans.c.keys())
_SQLITE_UPSERT = BatchInsert(
    trace_spans,
    SPAN_COLUMNS,
    "ON CONFLICT (trace_id, span_id) DO UPDATE SET "
    + ", ".join(f'"{name}" = excluded."{name}"' for name in _UPDATED),
)


def span_values(span: StoredSpan) -> tuple[object, ...]:
    """A span as its store row's values, in ``SPAN_COLUMNS`` order (attributes as JSON)."""
    return (
        span.trace_hex,
        span.span_hex,
        None if span.parent_id is None else f"{span.parent_id:016x}",
        span.name[:300],
        span.kind,
        span.start_ns,
        span.end_ns,
        span.session_id,
        span.key_id,
        span.project,
        span.agent,
        span.request_id,
        span.input_tokens,
        span.output_tokens,
        span.cost_micros,
        None if span.error is None else span.error[:200],
        orjson.dumps(span.attributes).decode(),
        span.end_ns // 1_000_000,
    )


def span_row(span: StoredSpan) -> dict[str, Any]:
    """A span as its store row, by column name."""
    return dict(zip(SPAN_COLUMNS, span_values(span), strict=True))
