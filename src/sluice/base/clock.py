"""Injected time and ids, so windows and ids can be tested without sleeping."""

from __future__ import annotations

import time
from typing import Protocol

from ulid import ULID


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


def new_request_id() -> str:
    """``req_`` + a ULID: unique across replicas and sortable by time."""
    return f"req_{ULID()}"
