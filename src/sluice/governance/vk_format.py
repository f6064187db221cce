"""Virtual key format, generation and keyed hashing.

A key is ``lw_vk_live_<26-char ULID><secret>`` (or ``lw_vk_test_``). The ULID is the key's id,
so a lookup needs no hash index; only HMAC-SHA256(server secret, key) is stored, and it is
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from typing import NamedTuple

from ulid import ULID

LIVE_PREFIX = "lw_vk_live_"
TEST_PREFIX = "lw_vk_test_"
DISPLAY_PREFIX_LEN = 18
_ID_LEN = 26
SECRET_LEN = 32
_ALPHABET = string.ascii_letters + string.digits
_SHAPE = re.compile(r"lw_vk_(live|test)_([0-9A-HJKMNP-TV-Z]{26})([A-Za-z0-9]{24,128})")


class ParsedKey(NamedTuple):  # a tuple: built on every request, in C
    environment: str
    key_id: str


def parse_key(presented: str) -> ParsedKey | None:
    match = _SHAPE.fullmatch(presented)
    if match is None:
        return None
    return ParsedKey(*match.group(1, 2))


def new_key_id() -> str:
    return str(ULID())


def mint_key(key_id: str, *, test: bool = False) -> str:
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LEN))
    return f"{TEST_PREFIX if test else LIVE_PREFIX}{key_id}{secret}"


def display_prefix(key: str) -> str:
    """``lw_vk_live_`` and the last 7 characters of the key id (key[30:37], just before the
    secret). Those are the ULID's random part: its first characters are a timestamp, which
    keys minted within half a minute share. 35 random bits keep a million keys' prefixes
    apart in practice, and rotation (same id) keeps the prefix."""
    env = key[: len(LIVE_PREFIX)]
    key_id = key[len(LIVE_PREFIX) : len(LIVE_PREFIX) + _ID_LEN]
    return env + key_id[-(DISPLAY_PREFIX_LEN - len(LIVE_PREFIX)) :]


def hash_key(server_secret: bytes, key: str) -> str:
    return hmac.new(server_secret, key.encode("ascii"), hashlib.sha256).hexdigest()


class KeyHasher:
    """``hash_key`` for one server secret, keyed once: each call copies the keyed state
    instead of keying HMAC again (half the cost, on every request)."""

    __slots__ = ("_keyed",)

    def __init__(self, server_secret: bytes) -> None:
        self._keyed = hmac.new(server_secret, digestmod=hashlib.sha256)

    def __call__(self, key: str) -> str:
        mac = self._keyed.copy()
        mac.update(key.encode("ascii"))
        return mac.hexdigest()


def hashes_match(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))
