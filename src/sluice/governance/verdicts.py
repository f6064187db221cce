"""Remembered tool verdicts, so Claude Code's non-streaming retry is refused without a second
upstream call (and so without a second bill).

Claude Code answers a mid-stream ``event: error`` by re-sending the same conversation without
``stream``. The verdict is keyed by the key id and a hash of the model and the messages, and
kept in a ``VerdictStore`` (``sluice.backends``): in-process, or in Redis across replicas.
"""

from __future__ import annotations

import hashlib

from sluice.backends.protocols import VerdictStore
from sluice.errors import GatewayError, VerdictUnavailable
from sluice.governance.outage import OUTAGE_ERRORS, Outage


def conversation_fingerprint(model: str, messages: bytes) -> bytes:
    """The verdict's key: the model and the ``messages`` array's raw bytes. Claude Code's retry
    re-sends the conversation byte for byte but changes other members (2.1.197 drops ``stream``;
    2.1.332 also lowers ``max_tokens``, 128000 to 64000), so the whole body cannot be the key."""
    return hashlib.sha256(model.encode() + b"\0" + messages).digest()


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
