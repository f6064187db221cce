"""Server-wide settings kept in the database (the generated HMAC key lives here)."""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.config.models import SluiceConfig
from sluice.store.tables import settings

log = logging.getLogger("sluice")

SECRET_KEY_SETTING = "vk_hmac_secret"  # noqa: S105 - a setting name, not a secret


async def get_or_create_secret(engine: AsyncEngine) -> tuple[str, bool]:
    """Return (secret, created). Two processes racing here both end with the first one's."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(settings.c.value).where(settings.c.name == SECRET_KEY_SETTING)
            )
        ).first()
    if row is not None:
        return str(row[0]), False
    candidate = secrets.token_hex(32)
    try:
        async with engine.begin() as conn:
            await conn.execute(settings.insert().values(name=SECRET_KEY_SETTING, value=candidate))
    except IntegrityError:
        return await get_or_create_secret(engine)
    return candidate, True


async def resolve_secret(config: SluiceConfig, engine: AsyncEngine) -> bytes:
    if config.secret_key is not None:
        return config.secret_key.get_secret_value().encode()
    secret, created = await get_or_create_secret(engine)
    if created:
        log.warning(
            "secret_key is not set: generated one and stored it in the database. "
            "Set SLUICE_SECRET_KEY to manage it yourself."
        )
    return secret.encode()
