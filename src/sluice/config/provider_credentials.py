"""A project's own credential for a provider of the server config, per provider type.

What may be stored (validated against the provider's type):

- anthropic, openai: ``api_key``;
- bedrock: ``access_key_id`` + ``secret_access_key`` (+ ``session_token``), or
  ``bearer_token`` (a Bedrock API key);
- vertex: ``service_account_json`` (the key file's JSON, as an object or as text), or
  ``access_token``.

``apply`` lays one over the server's provider config: only the credential fields change (the
region, base URL, model map and timeouts stay the server's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from sluice.config.loader import ConfigProblem
from sluice.config.providers import AnyProviderConfig

_Secret = Field(min_length=1, max_length=16_384)
_OptionalSecret = Field(default=None, min_length=1, max_length=16_384)


class _Credential(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKeyCredential(_Credential):
    api_key: str = _Secret


class BedrockCredential(_Credential):
    access_key_id: str | None = Field(default=None, min_length=1, max_length=256)
    secret_access_key: str | None = _OptionalSecret
    session_token: str | None = _OptionalSecret
    bearer_token: str | None = _OptionalSecret

    @model_validator(mode="after")
    def _one_kind(self) -> BedrockCredential:
        keys = self.access_key_id is not None or self.secret_access_key is not None
        if keys == (self.bearer_token is not None):
            raise ValueError("give access_key_id + secret_access_key, or bearer_token")
        if keys and (self.access_key_id is None or self.secret_access_key is None):
            raise ValueError("give access_key_id and secret_access_key together")
        if self.session_token is not None and not keys:
            raise ValueError("session_token goes with access_key_id and secret_access_key")
        return self


class VertexCredential(_Credential):
    service_account_json: dict[str, Any] | str | None = None
    access_token: str | None = _OptionalSecret

    @model_validator(mode="after")
    def _one_kind(self) -> VertexCredential:
        if (self.service_account_json is None) == (self.access_token is None):
            raise ValueError("give service_account_json or access_token")
        info = self.service_account_json
        if isinstance(info, str):
            try:
                info = json.loads(info)
            except ValueError as exc:
                raise ValueError("service_account_json: not JSON") from exc
        if info is not None and (
            not isinstance(info, dict) or info.get("type") != "service_account"
        ):
            raise ValueError('service_account_json: not a service-account key ("type")')
        if info is not None and not all(info.get(k) for k in ("client_email", "private_key")):
            raise ValueError("service_account_json: needs client_email and private_key")
        return self


_MODELS: dict[str, type[_Credential]] = {
    "anthropic": ApiKeyCredential,
    "openai": ApiKeyCredential,
    "bedrock": BedrockCredential,
    "vertex": VertexCredential,
}


class InvalidCredential(ValueError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Credential:
    kind: str  # api_key | aws_keys | bearer_token | service_account | access_token
    fields: dict[str, str]  # the secret values, as stored (sealed)

    @property
    def last4(self) -> str:
        """The last four characters of the credential's main secret (all the API shows)."""
        main = next(
            self.fields[k]
            for k in ("api_key", "secret_access_key", "bearer_token", "access_token", "sa")
            if k in self.fields
        )
        if self.kind == "service_account":
            main = str(json.loads(main).get("private_key_id") or main.strip())
        return main[-4:]


def parse_credential(provider_type: str, body: dict[str, Any]) -> Credential:
    """The credential ``body`` gives for a provider of ``provider_type``; InvalidCredential
    (one problem per field) when it does not fit that type."""
    try:
        cred = _MODELS[provider_type].model_validate(body)
    except ValidationError as exc:
        problems = [
            ConfigProblem(
                ".".join(str(p) for p in e["loc"]), str(e["msg"]).removeprefix("Value error, ")
            )
            for e in exc.errors()
        ]
        raise InvalidCredential(problems) from None
    if isinstance(cred, ApiKeyCredential):
        return Credential("api_key", {"api_key": cred.api_key})
    if isinstance(cred, BedrockCredential):
        if cred.bearer_token is not None:
            return Credential("bearer_token", {"bearer_token": cred.bearer_token})
        values = cred.model_dump(exclude_none=True, exclude={"bearer_token"})
        return Credential("aws_keys", values)
    assert isinstance(cred, VertexCredential)
    if cred.access_token is not None:
        return Credential("access_token", {"access_token": cred.access_token})
    info = cred.service_account_json
    text = info if isinstance(info, str) else json.dumps(info)
    return Credential("service_account", {"sa": text})


def apply(config: AnyProviderConfig, cred: Credential) -> AnyProviderConfig:
    """The server's provider config with the project's credential in place of its own."""
    f = cred.fields

    def secret(name: str) -> SecretStr | None:
        return SecretStr(f[name]) if name in f else None

    if config.type in ("anthropic", "openai"):
        return config.model_copy(update={"api_key": secret("api_key")})
    if config.type == "bedrock":
        names = ("access_key_id", "secret_access_key", "session_token", "bearer_token")
        return config.model_copy(update={n: secret(n) for n in names})
    return config.model_copy(
        update={
            "access_token": secret("access_token"),
            "credentials_json": secret("sa"),
            "credentials_file": None,
        }
    )
