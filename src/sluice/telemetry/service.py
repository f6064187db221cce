"""Telemetry: the request path's one hook, and what it hands to the span-sink process.

``record`` runs at the end of every request: it finds the request's turn (tens of µs) and
appends a small ``Finished`` to a bounded buffer (by count and by the bytes of captured content
it keeps alive); when full it drops and counts. The buffer goes to
the sink process (``telemetry.sink``) every ``flush_interval_ms``, which builds the spans,
writes the local store and exports them. Nothing here can slow a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Mapping
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.base.settlement import Settlement
from sluice.base.text import MAX_IDENTIFIER_CHARS
from sluice.config.models import TracingConfig
from sluice.core.context import RequestContext
from sluice.store.traces_repo import TracesRepo
from sluice.telemetry.history import Opening, Recall
from sluice.telemetry.request_headers import (
    agent_name,
    parse_tool_durations,
    parse_traceparent,
    session_of,
)
from sluice.telemetry.side_calls import SessionPrompts
from sluice.telemetry.sink import SpanSink
from sluice.telemetry.spans import Finished
from sluice.telemetry.subagents import SubagentLinks
from sluice.telemetry.ttl_lru import TtlLru
from sluice.telemetry.turns import NO_HINTS, Hints, Turn, detect_turn

log = logging.getLogger("sluice.telemetry")

_PRUNE_EVERY_S = 3600.0
# Below this many bytes of messages a history is read whole faster than an opening is
# recalled and checked (telemetry/history.py).
_RECALL_FROM_BYTES = 32_768


def _hints(ctx: RequestContext, headers: dict[bytes, bytes]) -> Hints:
    """Claude Code's gateway hints (the peek read the class and agent ids; capped)."""
    prompt = headers.get(b"x-claude-code-prompt-id")
    if prompt is None:
        # A side call (compaction) may come without a prompt id: its class still counts.
        return Hints(request_class=ctx.request_class) if ctx.request_class else NO_HINTS
    return Hints(
        prompt_id=prompt[:MAX_IDENTIFIER_CHARS].decode("latin-1"),
        request_class=ctx.request_class,
        agent_id=ctx.agent_id,
        parent_agent_id=ctx.parent_agent_id,
        tool_durations=parse_tool_durations(headers.get(b"x-claude-code-prev-tool-durations")),
    )


def _agent(ctx: RequestContext, headers: dict[bytes, bytes], linked: bool, kind: str | None) -> str:
    """A subagent is named by its type (``invoke_agent general-purpose``): the hint header, or
    the tool's ``subagent_type`` when a hint-less link learnt it; the rest as before."""
    header = headers.get(b"x-claude-code-agent-type")
    if ctx.agent_id and header:
        return header[:MAX_IDENTIFIER_CHARS].decode("latin-1")
    if linked:
        return kind or "subagent"
    return agent_name(headers)


class Telemetry:
    def __init__(
        self,
        cfg: TracingConfig,
        engine: AsyncEngine | None,
        *,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.enabled = cfg.enabled
        # Pruning here; span writes (and tool-start reads) happen in the sink process.
        self._repo = TracesRepo(engine) if engine is not None and cfg.store else None
        self._sink = SpanSink(cfg, database_url, os.environ if env is None else env)
        self._subagents = SubagentLinks()  # hint-less subagents' parents (this process's)
        self._prompts = SessionPrompts()  # sessions' latest prompt ids (side calls without)
        # Per conversation (session, agent, request class): where its turn opened last time.
        self._openings: TtlLru[bytes, Opening] = TtlLru(10_000, 3600.0)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._wake = asyncio.Event()
        self._last_prune = 0.0
        self.recorded = 0
        self.dropped = 0

    # -- the request path ---------------------------------------------------------------

    def _turn_of(self, ctx: RequestContext) -> tuple[Turn, str | None, str] | Literal[False]:
        """(turn, session, agent), or False when the messages cannot be read."""
        # Names come lower-cased (ASGI), as the peek assumes. One C pass, reversed so that a
        # repeated header's first value wins (readers only .get() the names they know).
        headers = dict(reversed(ctx.headers))
        session = session_of(ctx.session_id, headers)
        now = time.monotonic()
        try:
            caller = parse_traceparent(headers.get(b"traceparent"))
            hints = _hints(ctx, headers)
            if session is not None:
                hints = self._prompts.fill(session, hints, now)
            parent = None
            if session is not None and hints.prompt_id is None:
                parent = self._subagents.link(session, ctx.agent_id, ctx.messages_raw, now)
            conversation = self._conversation(ctx, session)
            recall = Recall(self._openings.get(conversation, now)) if conversation else None
            turn = detect_turn(
                ctx.message_items(), session, ctx.request_id, caller, hints, parent, ctx.agent_id,
                recall,
            )  # fmt: skip
            if conversation and recall and recall.learnt:
                self._openings.put(conversation, recall.learnt, now)
            if session is not None:
                self._subagents.observe(session, turn, ctx.facts.tool_calls or (), now)
        except Exception:  # a body the upstream accepted but turns cannot read: no trace
            log.debug("no turn for %s", ctx.request_id, exc_info=True)
            return False
        kind = parent.agent_type if parent is not None else None
        return turn, session, _agent(ctx, headers, parent is not None, kind)

    @staticmethod
    def _conversation(ctx: RequestContext, session: str | None) -> bytes | None:
        """The key a long history's opening is remembered by (none for a short one): a digest,
        16 bytes an entry whatever the names' lengths."""
        if session is None or len(ctx.messages_raw) < _RECALL_FROM_BYTES:
            return None
        name = "\0".join((session, ctx.agent_id or "", ctx.request_class or ""))
        return hashlib.blake2b(name.encode(errors="replace"), digest_size=16).digest()

    def record(self, ctx: RequestContext, settled: Settlement) -> None:
        """Queue a finished request (identified key, Messages endpoint) for tracing.

        The record keeps no reference to the request body (unless content is captured):
        holding thousands of 100 KB bodies until the sink takes them would cost more memory
        and CPU (cache misses, allocator churn) than the turn detection that needs them.
        """
        if not self.enabled or ctx.key is None or ctx.messages_raw is None:
            return
        if settled.endpoint != "messages":
            return
        found = self._turn_of(ctx)
        if found is False:
            return
        turn, session, agent = found
        capture = self.cfg.capture_content and ctx.key.config.capture_content is not False
        if not self._sink.offer(Finished.of(ctx, settled, turn, session, agent, capture)):
            self._drop()
            return
        self.recorded += 1

    def _drop(self) -> None:
        self.dropped += 1
        if self.dropped % 1000 == 1:
            log.warning("trace queue full; %d requests dropped from tracing", self.dropped)

    # -- counters for metrics ----------------------------------------------------------

    def stats(self) -> dict[str, int]:
        sink = self._sink
        dropped_requests = self.dropped + sink.dropped
        dropped_spans = sink.child["export_dropped"]
        return {
            "recorded": self.recorded,
            "queue_depth": sink.waiting + sink.export_queue_depth,
            "dropped": dropped_requests + dropped_spans,
            "dropped_requests": dropped_requests,
            "dropped_spans": dropped_spans,
            "export_queue_depth": sink.export_queue_depth,
            "exported": sink.child["exported"],
            "export_failed": sink.child["export_failed"],
            "stored": sink.child["stored"],
            "store_failed": sink.child["store_failed"],
        }

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._sink.start()

    async def stop(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self.enabled:
            await self._sink.stop()

    async def flush(self, wait_s: float = 10.0) -> bool:
        """Hand over everything queued and wait until it is stored and exported (tests,
        shutdown); False when that took longer than ``wait_s``."""
        return await self._sink.idle(wait_s)

    async def handed_over(self, wait_s: float = 10.0) -> bool:
        """Wait until the sink process has taken every queued request (tests: its counters
        are then complete, even while a stuck collector keeps the export from ending)."""
        return await self._sink.handed_over(wait_s)

    async def _run(self) -> None:
        """Prunes the store now and then (span building happens in the sink process)."""
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _PRUNE_EVERY_S / 60)
            try:
                await self._maybe_prune()
            except Exception:
                log.exception("trace store pruning failed")

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if self._repo is None or now - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = now
        await self.prune()

    async def prune(self) -> int:
        """Delete stored spans older than ``retention_days``; return how many."""
        if self._repo is None:
            return 0
        cutoff = int(time.time() * 1000 - self.cfg.retention_days * 86_400_000)
        removed = await self._repo.prune(cutoff)
        if removed:
            log.info(
                "trace store: pruned %d spans older than %s days", removed, self.cfg.retention_days
            )
        return removed
