"""AWS auth for Bedrock: credentials from config or botocore's standard chain, never resolved
or refreshed on the event loop (the chain may call IMDS, STS or SSO), and SigV4 signing."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from sluice.config.providers import BedrockProviderConfig
from sluice.errors import ProviderError

SIGNING_SERVICE: Final = "bedrock"


class AwsCredentials:
    """Resolved once (lazily), then reused; a refreshable set is refreshed in a worker thread
    shortly before it expires (botocore's advisory window), one refresh at a time."""

    def __init__(self, provider_id: str, config: BedrockProviderConfig) -> None:
        self._provider_id = provider_id
        self._source: Any = None
        if config.access_key_id is not None and config.secret_access_key is not None:
            token = config.session_token.get_secret_value() if config.session_token else None
            self._source = Credentials(
                config.access_key_id.get_secret_value(),
                config.secret_access_key.get_secret_value(),
                token,
            )
        self._lock = asyncio.Lock()

    async def frozen(self) -> ReadOnlyCredentials:
        source = self._source
        if source is not None and not _refresh_needed(source):
            return source.get_frozen_credentials()  # the common case: no lock, no thread
        async with self._lock:
            if self._source is None:
                self._source = await asyncio.to_thread(_from_chain)
            if self._source is None:
                raise ProviderError(
                    f"Provider {self._provider_id} found no AWS credentials.",
                    meta={"provider": self._provider_id},
                    tips=[
                        "Set access_key_id/secret_access_key on the provider, or AWS_* "
                        "variables, a profile or an instance role for the default chain."
                    ],
                )
            frozen: ReadOnlyCredentials = await asyncio.to_thread(
                self._source.get_frozen_credentials
            )
            return frozen


def _refresh_needed(source: Any) -> bool:
    check = getattr(source, "refresh_needed", None)
    return bool(check()) if callable(check) else False


def _from_chain() -> Any:
    return botocore.session.Session().get_credentials()


def sign_request(
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    credentials: ReadOnlyCredentials | Credentials,
    region: str,
) -> dict[str, str]:
    """SigV4-sign a request for service ``bedrock``; returns ``headers`` plus Authorization,
    X-Amz-Date and (session credentials) X-Amz-Security-Token.

    ``credentials`` is a botocore ``Credentials``/``ReadOnlyCredentials``, already resolved:
    resolving may call IMDS or STS, so that is the caller's job, off the event loop. Send
    ``url`` and ``body`` exactly as given. botocore leaves hop-by-hop headers (Connection)
    and User-Agent out of the signature, so proxies may change them.
    """
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, SIGNING_SERVICE, region).add_auth(request)
    return {str(name): str(value) for name, value in request.headers.items()}
