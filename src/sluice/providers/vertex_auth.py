"""Bearer tokens for Vertex AI requests: a fixed token, or OAuth2 access tokens from
google-auth refreshed in a worker thread (loading Application Default Credentials may probe
the GCE metadata server; a refresh is a blocking HTTP call)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import google.auth
import urllib3
from google.auth.transport.urllib3 import Request
from google.oauth2 import service_account

from sluice.config.providers import VertexProviderConfig

__all__ = [
    "CLOUD_PLATFORM_SCOPE",
    "GoogleTokenSource",
    "RefreshableCredentials",
    "StaticTokenSource",
    "TokenSource",
    "token_source",
]

CLOUD_PLATFORM_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"


class TokenSource(Protocol):
    """Where the ``Authorization: Bearer`` token for a Vertex request comes from."""

    async def token(self) -> str: ...


class StaticTokenSource:
    """A fixed token (tests, or a token minted elsewhere)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


class RefreshableCredentials(Protocol):
    """The part of ``google.auth.credentials.Credentials`` that GoogleTokenSource uses."""

    @property
    def token(self) -> str | None: ...

    @property
    def valid(self) -> bool: ...

    def refresh(self, request: Any) -> None: ...


class GoogleTokenSource:
    """OAuth2 access tokens from google-auth: a service-account key (``credentials_info``, the
    parsed JSON key file) or, when None, Application Default Credentials.

    Loading ADC may probe the GCE metadata server and refreshing is a blocking HTTP call, so
    both run in a worker thread, under a lock so concurrent requests refresh once. ``valid``
    is false from 3m45s before expiry (google-auth's threshold), so a token is renewed before
    it can expire in flight. Refresh errors (``google.auth.exceptions.RefreshError``)
    propagate. ``credentials`` injects a ready credentials object (tests, custom flows).
    """

    def __init__(
        self,
        credentials_info: Mapping[str, Any] | None = None,
        *,
        credentials: RefreshableCredentials | None = None,
    ) -> None:
        if credentials_info is not None and credentials_info.get("type") != "service_account":
            raise ValueError("credentials_info must be a service-account key")
        self._info = dict(credentials_info) if credentials_info is not None else None
        self._credentials = credentials
        self._lock = asyncio.Lock()
        self._http: urllib3.PoolManager | None = None
        info_project = self._info.get("project_id") if self._info else None
        self.project_id: str | None = info_project if isinstance(info_project, str) else None

    async def token(self) -> str:
        creds = self._credentials
        if creds is not None and creds.valid and creds.token:
            return creds.token  # the common case: no lock, no thread
        async with self._lock:
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(self._load)
            creds = self._credentials
            if not (creds.valid and creds.token):  # another waiter may have refreshed it
                await asyncio.to_thread(creds.refresh, self._request())
        token = creds.token
        if not token:
            raise RuntimeError("google-auth returned no access token")
        return token

    def _load(self) -> RefreshableCredentials:
        if self._info is not None:
            creds: RefreshableCredentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                self._info, scopes=[CLOUD_PLATFORM_SCOPE]
            )
            return creds
        loaded, project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        if self.project_id is None and isinstance(project, str):
            self.project_id = project
        return loaded

    def close(self) -> None:
        """Drop the pooled connections to Google's token endpoint."""
        if self._http is not None:
            self._http.clear()
            self._http = None

    def _request(self) -> Request:
        if self._http is None:
            self._http = urllib3.PoolManager()
        return Request(self._http)  # type: ignore[no-untyped-call]


def token_source(config: VertexProviderConfig) -> TokenSource:
    if config.access_token is not None:
        return StaticTokenSource(config.access_token.get_secret_value())
    if config.credentials_json is not None:
        return GoogleTokenSource(json.loads(config.credentials_json.get_secret_value()))
    if config.credentials_file is not None:
        # Read once at start-up (a small local file), like the config file itself.
        info = json.loads(Path(config.credentials_file).read_text(encoding="utf-8"))
        return GoogleTokenSource(info)
    return GoogleTokenSource()
