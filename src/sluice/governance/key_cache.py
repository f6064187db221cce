"""Authenticating presented keys from memory.

After a key's first use there is no database round trip per request. A background poll of
``updated_at`` keeps every process within ``key_refresh_seconds`` of the database, so a disable,
revoke or rotation made by any process takes effect everywhere within that bound.

A well-formed key whose id is not on file is remembered as unknown (negative cache: at most
``_NEGATIVE_MAX`` ids, least recently seen dropped first, each for ``_NEGATIVE_TTL_MS``), and
concurrent lookups of one id share one database read, so a flood of made-up keys costs at
most one read per id per TTL. Any refresh that sees a key drops it from the negative cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from sluice.base.clock import Clock
from sluice.errors import InvalidApiKey, VirtualKeyDisabled, VirtualKeyExpired, VirtualKeyRevoked
from sluice.governance import vk_format
from sluice.governance.virtual_key import VirtualKey, key_from_row
from sluice.store.keys_repo import KeysRepo

log = logging.getLogger("sluice.keys")

_NEGATIVE_TTL_MS = 2_000  # an unknown id is asked of the DB at most this often
_NEGATIVE_MAX = 10_000  # unknown ids remembered; junk ids must not grow memory
_FULL_RESYNC_EVERY = 30  # polls; covers clock skew larger than the overlap margin
_VERIFIED_MAX = 4_096  # presented keys remembered as verified; forgotten all at once when full


class KeyRefused(InvalidApiKey):
    """A 401 that knows why (``reason``: missing, malformed, unknown, mismatch) for metrics;
    the client sees the same error whatever the reason (no oracle for which ids exist)."""

    def __init__(self, reason: str, message: str, tips: list[str]) -> None:
        super().__init__(message, tips=tips)
        self.reason = reason


def _invalid(reason: str) -> KeyRefused:
    # Never echo what was presented: the message is logged and shown to clients.
    return KeyRefused(
        reason,
        "Invalid API key: this virtual key is not known to the gateway.",
        ["Check ANTHROPIC_AUTH_TOKEN / ANTHROPIC_API_KEY against `sluice keys list`."],
    )


class KeyCache:
    def __init__(
        self,
        repo: KeysRepo,
        server_secret: bytes,
        clock: Clock,
        refresh_s: float,
        *,
        unknown_max: int = _NEGATIVE_MAX,
        unknown_ttl_ms: int = _NEGATIVE_TTL_MS,
    ) -> None:
        self._repo = repo
        self._hash = vk_format.KeyHasher(server_secret)
        self._clock = clock
        self._refresh_s = refresh_s
        self._unknown_max = unknown_max
        self._unknown_ttl_ms = unknown_ttl_ms
        self._keys: dict[str, VirtualKey] = {}
        # key id -> ms when it was found missing, least recently seen first
        self._unknown: OrderedDict[str, int] = OrderedDict()
        self._loading: dict[tuple[str, int], asyncio.Task[VirtualKey | None]] = {}  # in flight
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Refreshes run one at a time, so an older read never lands after a newer one; a
        # first-use load that overlaps a reload is not cached (it may predate the change).
        self._refresh_lock = asyncio.Lock()
        self._generation = 0
        # Presented key -> the cached key object whose current secret it matched. A repeat
        # skips the shape check and the HMAC for as long as that object is the cached one:
        # any change to the key (rotation, revocation, a reload) replaces the object. Only
        # verified keys get in, so junk cannot grow it; they are held as the request path
        # holds them anyway, never logged or stored.
        self._verified: dict[str, VirtualKey] = {}

    async def authenticate(self, presented: str | None) -> VirtualKey:
        key = await self.identify(presented)
        self.check_usable(key)
        return key

    async def identify(self, presented: str | None) -> VirtualKey:
        """The key whose secret (or, within its rotation grace, previous secret) was presented."""
        if not presented:
            raise KeyRefused(
                "missing",
                "Missing API key: send the virtual key as `Authorization: Bearer <key>` "
                "or `x-api-key`.",
                ["export ANTHROPIC_AUTH_TOKEN=<virtual key> before starting claude"],
            )
        known = self._verified.get(presented)
        if known is not None and self._keys.get(known.id) is known:
            return known
        parsed = vk_format.parse_key(presented)
        if parsed is None:
            raise _invalid("malformed")
        key = self._keys.get(parsed.key_id) or await self._load(parsed.key_id)
        if key is None:
            raise _invalid("unknown")
        if key.environment != parsed.environment:
            raise _invalid("mismatch")
        now = self._clock.now_ms()
        presented_hash = self._hash(presented)
        if vk_format.hashes_match(presented_hash, key.key_hash):
            self._remember(presented, key)
            return key
        # A previous secret is never remembered: its grace period ends by the clock.
        in_grace = key.previous_valid_until is not None and now < key.previous_valid_until
        if not (
            in_grace
            and key.previous_key_hash
            and vk_format.hashes_match(presented_hash, key.previous_key_hash)
        ):
            raise _invalid("mismatch")
        return key

    def _remember(self, presented: str, key: VirtualKey) -> None:
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[presented] = key

    def check_usable(self, key: VirtualKey) -> None:
        """Refuse a known key that is revoked, disabled or expired."""
        now = self._clock.now_ms()
        if key.status == "revoked":
            raise VirtualKeyRevoked(f"Virtual key {key.display_prefix}… has been revoked.")
        if key.status == "disabled":
            raise VirtualKeyDisabled(
                f"Virtual key {key.display_prefix}… is disabled.",
                tips=["An admin can re-enable it with `sluice keys enable`."],
            )
        if key.expires_at is not None and now >= key.expires_at:
            raise VirtualKeyExpired(
                "This key has expired. Extend its expiration date, or create a new key."
            )

    @property
    def unknown_count(self) -> int:
        """Ids in the negative cache now."""
        return len(self._unknown)

    def forget_unknown(self, key_id: str | None = None) -> None:
        """Drop one id (None: every id) from the negative cache, e.g. once a key is created."""
        if key_id is None:
            self._unknown.clear()
        else:
            self._unknown.pop(key_id, None)

    async def _load(self, key_id: str) -> VirtualKey | None:
        missing_since = self._unknown.get(key_id)
        if missing_since is not None:
            if self._clock.now_ms() - missing_since < self._unknown_ttl_ms:
                self._unknown.move_to_end(key_id)
                return None
            del self._unknown[key_id]
        # One read per id and generation: a request that starts after a reload never joins a
        # read that began before it (and may predate the change).
        flight = (key_id, self._generation)
        task = self._loading.get(flight)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._read(key_id))
            self._loading[flight] = task
        # Shielded: a caller that goes away does not cancel the read the others wait for.
        return await asyncio.shield(task)

    async def _read(self, key_id: str) -> VirtualKey | None:
        generation = self._generation
        try:
            row = await self._repo.get(key_id)
        finally:
            self._loading.pop((key_id, generation), None)
        if generation != self._generation:
            # overlapped a reload: it may predate the change, so cache nothing
            return None if row is None else key_from_row(row)
        if row is None:
            self._unknown[key_id] = self._clock.now_ms()
            if len(self._unknown) > self._unknown_max:
                self._unknown.popitem(last=False)
            return None
        key = key_from_row(row)
        self._unknown.pop(key_id, None)
        self._keys[key_id] = key
        return key

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll_forever())

    async def stop(self) -> None:
        # Let a refresh in flight finish rather than cutting a database read off midway.
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def refresh(self, since_ms: int | None) -> None:
        """Apply changes made since ``since_ms`` (None: re-read every cached key). The poll is
        the safety net: its overlapping windows correct a first-use read that raced it, so it
        does not invalidate reads in flight (that would defeat the negative cache's one read
        per id under a flood); ``reload`` does, for changes the CLI waits on."""
        async with self._refresh_lock:
            if since_ms is None:
                rows = await self._repo.get_many(list(self._keys))
                changed = [key_from_row(row) for row in rows]
                self.forget_unknown()
            else:
                rows = await self._repo.changed_since(since_ms)
                changed = [key_from_row(row) for row in rows]
            for key in changed:
                self._unknown.pop(key.id, None)
                if key.id in self._keys:
                    self._keys[key.id] = key

    async def reload(self) -> None:
        """A key change has committed (config sync): forget the ids found missing and re-read
        every cached key, so the next request sees the change. The one entry point for
        invalidation."""
        async with self._refresh_lock:
            self._generation += 1
            self.forget_unknown()
            cached = list(self._keys)
            fresh = {row.id: key_from_row(row) for row in await self._repo.get_many(cached)}
            for key_id in cached:
                if key_id in fresh:
                    self._keys[key_id] = fresh[key_id]
                else:
                    self._keys.pop(key_id, None)

    async def _poll_forever(self) -> None:
        # Overlap each window by two intervals: writers stamp updated_at with their own clock.
        margin_ms = int(self._refresh_s * 2000)
        last = self._clock.now_ms()
        polls = 0
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._refresh_s)
            if self._stopping.is_set():
                return
            started = self._clock.now_ms()
            polls += 1
            try:
                full = polls % _FULL_RESYNC_EVERY == 0
                await self.refresh(None if full else last - margin_ms)
                last = started
            except Exception:  # keep serving from memory; try again next tick
                log.exception("key refresh failed")
