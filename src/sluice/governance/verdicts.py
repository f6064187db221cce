"""Remembered tool verdicts, so Claude Code's non-streaming retry is refused without a second
upstream call (and so without a second bill).

Claude Code answers a mid-stream ``event: error`` by re-sending the same body without
``stream``. The verdict is keyed by the key id and a hash of the body minus ``stream``, and
kept in a ``VerdictStore`` (``sluice.backends``): in-process, or in Redis across replicas.
"""

from __future__ import annotations

import hashlib
import re

from sluice.backends.protocols import VerdictStore
from sluice.errors import GatewayError, VerdictUnavailable
from sluice.governance.outage import OUTAGE_ERRORS, Outage

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


class Verdicts:
    """Remembered verdicts over a ``VerdictStore`` (in-process or shared by replicas).

    With the shared store unreachable, a lookup either finds nothing (open: the request goes
    upstream and the key's policy judges its response afresh) or refuses (closed: 503)."""

    def __init__(self, store: VerdictStore, outage: Outage | None = None) -> None:
        self.store = store
        self._outage = outage or Outage()

    def _lost(self, exc: Exception) -> None:
        if self._outage.failed("verdicts", exc) == "closed":
            raise VerdictUnavailable(
                "Remembered tool verdicts cannot be checked right now (the shared store is "
                "unreachable), and this gateway refuses such requests meanwhile.",
                tips=["Check the redis: setting and that Redis is up; see /readyz."],
            ) from exc

    async def any_for(self, key_id: str) -> bool:
        """Whether this key has any live verdict: when not, nothing needs hashing at all."""
        try:
            return await self.store.any_for(key_id)
        except OUTAGE_ERRORS as exc:
            self._lost(exc)
            return False

    async def put(self, key_id: str, fingerprint: bytes, verdict: GatewayError) -> None:
        try:
            await self.store.put(key_id, fingerprint, verdict)
        except OUTAGE_ERRORS as exc:
            # After the response: nothing to refuse. The retry is judged afresh.
            self._outage.failed("verdicts", exc)

    async def get(self, key_id: str, fingerprint: bytes) -> GatewayError | None:
        try:
            return await self.store.get(key_id, fingerprint)
        except OUTAGE_ERRORS as exc:
            self._lost(exc)
            return None
