"""Spans from finished requests, in the span-sink process.

The gateway hands over ``Finished`` records (the turn is already detected); this turns them into
the turn's spans. It remembers when each ``tool_use`` it saw started streaming, so the next
request's ``execute_tool`` span starts there; a tool call that another replica relayed is looked
up in the shared trace store (the chat span that asked for it records the start).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict

from sluice.store.traces_repo import TracesRepo
from sluice.telemetry.spans import (
    Finished,
    SpanRecord,
    chat_span,
    root_span,
    tool_call_starts,
    tool_spans,
)

log = logging.getLogger("sluice.telemetry")

_TOOL_STARTS_KEPT = 10_000  # tool_use ids remembered for the next request's tool span
_ROOTS_KEPT = 10_000  # open turns whose root span a later request may stretch


class SpanBuilder:
    def __init__(self, repo: TracesRepo | None) -> None:
        self._repo = repo  # the shared store, for tool calls another replica relayed
        self._tool_starts: OrderedDict[str, int] = OrderedDict()
        self._tool_unknown: OrderedDict[str, int] = OrderedDict()  # looked up, not found
        self._roots: OrderedDict[tuple[int, int], SpanRecord] = OrderedDict()

    async def build(self, records: list[Finished]) -> list[SpanRecord]:
        spans: list[SpanRecord] = []
        for rec in records:
            try:
                spans.extend(await self._spans(rec))
            except Exception:
                log.exception("could not build spans for %s", rec.request_id)
        return spans

    async def _spans(self, rec: Finished) -> list[SpanRecord]:
        turn, session, agent = rec.turn, rec.session, rec.agent
        capture = rec.messages_json is not None
        for tool_use_id, at in tool_call_starts(rec).items():
            self._remember(self._tool_starts, tool_use_id, at)
        known = {r.tool_use_id: self._tool_starts.get(r.tool_use_id) for r in turn.tool_results}
        if self._repo is not None:
            for result in turn.tool_results:
                tool_use_id = result.tool_use_id
                if (
                    known[tool_use_id] is None
                    and result.asked_at_messages is not None
                    and tool_use_id not in self._tool_unknown
                ):
                    known[tool_use_id] = await self._repo.tool_start(
                        f"{turn.trace_id:032x}",
                        f"{turn.chat_span_for(result.asked_at_messages):016x}",
                        tool_use_id,
                    )
                    if known[tool_use_id] is None:
                        # Asked once: a retried request must not cost a query each time.
                        self._remember(self._tool_unknown, tool_use_id, 0)
        found = {k: v for k, v in known.items() if v is not None}
        spans = [chat_span(rec, turn, session, agent, capture)]
        root = self._root(rec)
        if root is not None:
            spans.insert(0, root)
        spans.extend(tool_spans(rec, turn, session, agent, capture, found))
        return spans

    def _root(self, rec: Finished) -> SpanRecord | None:
        """The turn's root: emitted by the request that opens the turn, then re-emitted (same
        ids, a later end) by each later request of the turn this process builds, so it covers
        the whole turn and no child runs past its end."""
        turn = rec.turn
        ident = (turn.trace_id, turn.root_span_id)
        if turn.opens:
            root = root_span(rec, turn, rec.session, rec.agent)
        else:
            known = self._roots.get(ident)
            end = rec.wall_ns(rec.ended)
            if known is None or end <= known.end_ns:
                return None
            root = dataclasses.replace(known, end_ns=end)
        self._roots[ident] = root
        self._roots.move_to_end(ident)
        while len(self._roots) > _ROOTS_KEPT:
            self._roots.popitem(last=False)
        return root

    @staticmethod
    def _remember(table: OrderedDict[str, int], tool_use_id: str, at: int) -> None:
        table[tool_use_id] = at
        table.move_to_end(tool_use_id)
        while len(table) > _TOOL_STARTS_KEPT:
            table.popitem(last=False)
