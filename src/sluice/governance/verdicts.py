"""Remembered tool verdicts, so Claude Code's non-streaming retry is refused without a second
upstream call (and so without a second bill).

Claude Code answers a mid-stream ``event: error`` by re-sending the same body without
``stream``. The verdict is keyed by the key id and a hash of the body minus ``stream``.
In-process for now; the shared counters backend will hold it across replicas.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import orjson

from sluice.core.clock import Clock
from sluice.errors import GatewayError

DEFAULT_TTL_S = 120.0
MAX_ENTRIES = 10_000


def body_fingerprint(parsed: dict[str, Any]) -> bytes:
    """Stable over key order and the ``stream`` flag (hashes a copy, never the relayed body)."""
    rest = {k: v for k, v in parsed.items() if k != "stream"}
    return hashlib.sha256(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)).digest()


class VerdictCache:
    def __init__(self, clock: Clock, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._clock = clock
        self._ttl_ms = int(ttl_s * 1000)
        self._entries: OrderedDict[tuple[str, bytes], tuple[int, GatewayError]] = OrderedDict()

    def put(self, key_id: str, fingerprint: bytes, verdict: GatewayError) -> None:
        self._entries[(key_id, fingerprint)] = (self._clock.now_ms() + self._ttl_ms, verdict)
        self._entries.move_to_end((key_id, fingerprint))
        while len(self._entries) > MAX_ENTRIES:  # bounded memory
            self._entries.popitem(last=False)

    def get(self, key_id: str, fingerprint: bytes) -> GatewayError | None:
        entry = self._entries.get((key_id, fingerprint))
        if entry is None:
            return None
        expires, verdict = entry
        if self._clock.now_ms() >= expires:
            del self._entries[(key_id, fingerprint)]
            return None
        # A fresh error each time: one exception instance must not be raised twice.
        return type(verdict)(verdict.message, meta=verdict.meta, tips=verdict.tips)
