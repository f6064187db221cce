"""Sealing stored secrets with the key-encryption key (KEK): AES-256-GCM, a random 96-bit
nonce per value, and associated data naming where the value belongs (a sealed credential
copied onto another project's or provider's row does not open)."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK_ENV = "SLUICE_KEK"
_NONCE = 12


class KekError(ValueError):
    """No usable KEK, or one that does not open what is stored: a start-up error."""


def parse_kek(raw: bytes, origin: str) -> bytes:
    """32 raw bytes, or their base64 (whitespace ignored)."""
    if len(raw) == 32:
        return raw
    try:
        key = base64.b64decode(b"".join(raw.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KekError(f"{origin}: not base64 (expected 32 bytes, base64-encoded)") from exc
    if len(key) != 32:
        raise KekError(f"{origin}: decodes to {len(key)} bytes; the KEK must be 32 bytes")
    return key


def load_kek(kek_file: str | None, env: Mapping[str, str] | None = None) -> bytes | None:
    """``SLUICE_KEK`` wins, else ``secrets.kek_file``; None when neither is set."""
    env = os.environ if env is None else env
    if env.get(KEK_ENV):
        return parse_kek(env[KEK_ENV].encode(), KEK_ENV)
    if kek_file is None:
        return None
    try:
        raw = Path(kek_file).read_bytes()
    except OSError as exc:
        raise KekError(f"secrets.kek_file {kek_file}: {exc.strerror or exc}") from exc
    return parse_kek(raw, f"secrets.kek_file {kek_file}")


def new_kek() -> str:
    """A fresh KEK, base64 (for a kek file or ``SLUICE_KEK``)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def seal(kek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(kek).encrypt(nonce, plaintext, aad)


def unseal(kek: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
    except InvalidTag as exc:
        raise KekError("the KEK does not open a stored credential (a different key?)") from exc


def credential_aad(project: str, provider_id: str) -> bytes:
    # Length-prefixed: ("ab", "c") and ("a", "bc") must not share associated data.
    p, q = project.encode(), provider_id.encode()
    return b"sluice.provider_credential\0%d:%s%d:%s" % (len(p), p, len(q), q)
