"""Remembered tool verdicts, so Claude Code's non-streaming retry is refused without a second
upstream call (and so without a second bill).

Claude Code answers a mid-stream ``event: error`` by re-sending the same body without
``stream``. The verdict is keyed by the key id and a hash of the body minus ``stream``.
In-process for now; the shared counters backend will hold it across replicas.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from typing import Protocol

import orjson
from redis.asyncio import Redis

from sluice.base.clock import Clock
from sluice.errors import GatewayError, ToolNotAllowed, VerdictUnavailable
from sluice.governance.outage import OUTAGE_ERRORS, Outage

DEFAULT_TTL_S = 120.0
MAX_ENTRIES = 10_000


_STREAM_VALUE = re.compile(rb'"stream"\s*:\s*(?:true|false)')
_WS = b" \t\r\n"


def _without_stream(body: bytes) -> bytes:
    """``body`` minus each ``"stream": true|false`` member and one adjacent comma."""
    parts: list[bytes] = []
    last = 0
    at = body.find(b'"stream"')
    while at != -1:
        match = _STREAM_VALUE.match(body, at)
        if match is not None:
            start, end = at, match.end()
            before = at - 1
            while before >= 0 and body[before] in _WS:
                before -= 1
            if before >= 0 and body[before] == 0x2C:  # a comma before it
                start = before
            else:
                after = end
                while after < len(body) and body[after] in _WS:
                    after += 1
                if after < len(body) and body[after] == 0x2C:
                    end = after + 1
            parts.append(body[last:start])
            last = end
        at = body.find(b'"stream"', at + 1)
    parts.append(body[last:])
    return b"".join(parts)


def body_fingerprint(body: bytes) -> bytes:
    """A hash of the body bytes with the ``stream`` member cut out: Claude Code's retry is the
    same bytes minus ``,"stream":true``. Finding it in the raw bytes costs a fraction of a full
    parse; a nested ``"stream"`` key is cut too, which only makes two bodies that differ in
    nothing else share a verdict."""
    return hashlib.sha256(_without_stream(body)).digest()


class Verdicts(Protocol):
    async def any_for(self, key_id: str) -> bool:
        """Whether this key has any live verdict: when not, nothing needs hashing at all."""
        ...

    async def put(self, key_id: str, fingerprint: bytes, verdict: GatewayError) -> None: ...

    async def get(self, key_id: str, fingerprint: bytes) -> GatewayError | None: ...


class VerdictCache:
    """In-process: a retry that reaches another replica goes upstream (and is judged again)."""

    def __init__(self, clock: Clock, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._clock = clock
        self._ttl_ms = int(ttl_s * 1000)
        self._entries: OrderedDict[tuple[str, bytes], tuple[int, GatewayError]] = OrderedDict()
        self._latest: dict[str, int] = {}  # key id -> when its newest verdict expires

    async def any_for(self, key_id: str) -> bool:
        return self._latest.get(key_id, 0) > self._clock.now_ms()

    async def put(self, key_id: str, fingerprint: bytes, verdict: GatewayError) -> None:
        expires = self._clock.now_ms() + self._ttl_ms
        self._entries[(key_id, fingerprint)] = (expires, verdict)
        self._latest[key_id] = expires
        self._entries.move_to_end((key_id, fingerprint))
        while len(self._entries) > MAX_ENTRIES:  # bounded memory
            self._entries.popitem(last=False)

    async def get(self, key_id: str, fingerprint: bytes) -> GatewayError | None:
        entry = self._entries.get((key_id, fingerprint))
        if entry is None:
            return None
        expires, verdict = entry
        if self._clock.now_ms() >= expires:
            del self._entries[(key_id, fingerprint)]
            return None
        # A fresh error each time: one exception instance must not be raised twice.
        return type(verdict)(verdict.message, meta=verdict.meta, tips=verdict.tips)


class RedisVerdicts:
    """Shared by replicas: Claude Code's retry is refused whichever replica it reaches.

    With Redis unreachable, a lookup either finds nothing (open: the request goes upstream and
    the key's policy judges its response afresh) or refuses (closed: 503)."""

    def __init__(
        self, client: Redis, ttl_s: float = DEFAULT_TTL_S, outage: Outage | None = None
    ) -> None:
        self._redis = client
        self._ttl_ms = int(ttl_s * 1000)
        self._outage = outage or Outage()

    @staticmethod
    def _key(key_id: str, fingerprint: bytes) -> str:
        return f"sluice:v:{key_id}:{fingerprint.hex()}"

    def _lost(self, exc: Exception) -> None:
        if self._outage.failed("verdicts", exc) == "closed":
            raise VerdictUnavailable(
                "Remembered tool verdicts cannot be checked right now (the shared store is "
                "unreachable), and this gateway refuses such requests meanwhile.",
                tips=["Check the redis: setting and that Redis is up; see /readyz."],
            ) from exc

    async def any_for(self, key_id: str) -> bool:
        try:
            return bool(await self._redis.exists(f"sluice:v:any:{key_id}"))
        except OUTAGE_ERRORS as exc:
            self._lost(exc)
            return False

    async def put(self, key_id: str, fingerprint: bytes, verdict: GatewayError) -> None:
        record = {"message": verdict.message, "meta": verdict.meta, "tips": verdict.tips}
        try:
            key = self._key(key_id, fingerprint)
            await self._redis.set(key, orjson.dumps(record), px=self._ttl_ms)
            await self._redis.set(f"sluice:v:any:{key_id}", 1, px=self._ttl_ms)
        except OUTAGE_ERRORS as exc:
            # After the response: nothing to refuse. The retry is judged afresh.
            self._outage.failed("verdicts", exc)

    async def get(self, key_id: str, fingerprint: bytes) -> GatewayError | None:
        try:
            raw = await self._redis.get(self._key(key_id, fingerprint))
        except OUTAGE_ERRORS as exc:
            self._lost(exc)
            return None
        if raw is None:
            return None
        record = orjson.loads(raw)
        return ToolNotAllowed(record["message"], meta=record["meta"], tips=record["tips"])
