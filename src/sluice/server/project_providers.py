"""Projects' own provider credentials, put in force in this gateway process.

A config-sync reloader: when the config version moves (a credential set or removed through
the admin API), it reads every stored credential, builds one provider per (project, provider)
whose credential changed, closes the ones replaced, and swaps the router's ``by_project`` map
whole. Requests of keys without an override never see any of this (one dict get).

The KEK is checked at start-up: stored credentials with no KEK, or a KEK that does not open
them, stop the gateway with a clear message rather than failing requests one by one. After
start-up a reload that cannot open a credential keeps the previous providers and logs why.
"""

from __future__ import annotations

import logging

import aiohttp
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.config.models import SluiceConfig
from sluice.config.provider_credentials import Credential, apply
from sluice.config.providers import AnyProviderConfig
from sluice.core.router import Router
from sluice.providers.base import Provider
from sluice.providers.factory import build_provider
from sluice.store.credentials_repo import CredentialsRepo, StoredCredential
from sluice.store.sealing import KekError, load_kek

log = logging.getLogger("sluice.providers")

_Key = tuple[str, str]  # (project, provider id)


class ProjectProviders:
    def __init__(
        self,
        config: SluiceConfig,
        engine: AsyncEngine,
        router: Router,
        session: aiohttp.ClientSession,
        provider_configs: dict[str, AnyProviderConfig],
    ) -> None:
        self._kek = load_kek(config.secrets.kek_file)  # KekError: a bad SLUICE_KEK or file
        self._repo = CredentialsRepo(engine)
        self._router = router
        self._session = session
        self._configs = provider_configs
        # Built instances, with the sealed value they were built from (a change rebuilds).
        self._built: dict[_Key, tuple[bytes, Provider]] = {}

    async def start(self) -> None:
        stored = await self._repo.all()
        if stored and self._kek is None:
            raise KekError(
                f"{len(stored)} provider credential(s) are stored per project, but there is no "
                "key-encryption key: set SLUICE_KEK (base64 of 32 bytes) or secrets.kek_file"
            )
        await self._apply(stored)  # KekError when the KEK does not open them

    async def reload(self) -> None:
        try:
            await self._apply(await self._repo.all())
        except KekError as exc:
            log.error("project provider credentials not reloaded: %s", exc)

    async def _apply(self, stored: list[StoredCredential]) -> None:
        built: dict[_Key, tuple[bytes, Provider]] = {}
        for row in stored:
            base = self._configs.get(row.provider_id)
            if base is None or self._kek is None:
                continue  # a provider no longer in the server config: the row waits
            key = (row.project, row.provider_id)
            previous = self._built.get(key)
            if previous is not None and previous[0] == row.sealed:
                built[key] = previous
                continue
            fields = orjson.loads(row.open(self._kek))
            provider = build_provider(
                row.provider_id, apply(base, Credential(row.kind, fields)), self._session
            )
            built[key] = (row.sealed, provider)
        by_project: dict[str, dict[str, Provider]] = {}
        for (project, provider_id), (_sealed, provider) in built.items():
            mine = by_project.setdefault(project, dict(self._router.providers))
            mine[provider_id] = provider
        stale = [p for k, (sealed, p) in self._built.items() if built.get(k, (None,))[0] != sealed]
        self._built = built
        self._router.by_project = by_project  # one assignment: a request sees old or new
        for provider in stale:
            await provider.close()

    async def stop(self) -> None:
        for _sealed, provider in self._built.values():
            await provider.close()
        self._built = {}
