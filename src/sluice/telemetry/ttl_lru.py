"""A bounded map whose entries expire: the per-process memory of turn detection (subagent
links, a session's current prompt). Keys come from outside, so size and age are both capped:
the least recently used entry goes past ``max_entries``, and any entry unused for ``ttl_s``."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlLru(Generic[K, V]):
    __slots__ = ("_entries", "_max", "_ttl")

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_s

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def get(self, key: K, now: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry[0] > self._ttl:
            del self._entries[key]
            return None
        self._entries[key] = (now, entry[1])  # in use: keep it
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: K, value: V, now: float) -> None:
        entries = self._entries
        entries[key] = (now, value)
        entries.move_to_end(key)
        while len(entries) > self._max:
            entries.popitem(last=False)
        self.prune(now)

    def prune(self, now: float) -> None:
        """Drop the expired entries at the old end."""
        entries = self._entries
        while entries and now - next(iter(entries.values()))[0] > self._ttl:
            entries.popitem(last=False)
