"""Provider configs: one closed model per upstream kind, a discriminated union on ``type``.

Secrets are ``SecretStr`` so they redact themselves in reprs, logs and ``config check``.
Beta tables (``betas``) are merged over the kind's defaults (translate/bedrock.py,
translate/vertex.py): a name mapped to a string is forwarded under that name, a name mapped
to null is dropped; ``beta_defaults: false`` starts from an empty table instead.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

PROVIDER_TYPES = ("anthropic", "bedrock", "vertex", "openai")


def check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not a URL")
    return value.rstrip("/")


def _optional_url(value: str | None) -> str | None:
    return None if value is None else check_url(value)


class _ProviderBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Models this provider serves (Anthropic ids); None: discovered, or the model map's keys.
    models: list[str] | None = None
    connect_timeout_ms: int = Field(default=10_000, ge=1)
    # Bounds the wait for response headers; a stream may then run as long as it runs.
    header_timeout_ms: int = Field(default=600_000, ge=1)
    # A stream whose upstream sends nothing for this long is ended with an SSE error event.
    stream_idle_timeout_s: float = Field(default=300.0, gt=0)


class AnthropicProviderConfig(_ProviderBase):
    type: Literal["anthropic"]
    api_key: SecretStr | None = None
    base_url: str = "https://api.anthropic.com"
    # GET /v1/models when no `models` list is declared: how long one lookup may take. A failed
    # lookup is remembered for 30 s, and a stale list is served while a new one is fetched.
    discovery_timeout_ms: int = Field(default=2000, ge=50, le=60_000)

    _url = field_validator("base_url")(check_url)


class BedrockProviderConfig(_ProviderBase):
    type: Literal["bedrock"]
    region: str = "us-east-1"
    # Unset: botocore's standard chain (env, profile, SSO, IMDS/ECS), resolved off the loop.
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    # A Bedrock API key (AWS_BEARER_TOKEN_BEDROCK): sent as a bearer token, no SigV4.
    bearer_token: SecretStr | None = None
    base_url: str | None = None  # default https://bedrock-runtime.{region}.amazonaws.com
    betas: dict[str, str | None] = Field(default_factory=dict)
    beta_defaults: bool = True
    # Anthropic model id -> Bedrock model id / inference profile / ARN, over the defaults.
    model_map: dict[str, str] = Field(default_factory=dict)
    # Keep amazon-bedrock-invocationMetrics in message_stop (clients ignore unknown keys).
    keep_invocation_metrics: bool = False

    _url = field_validator("base_url")(_optional_url)

    @model_validator(mode="after")
    def _key_pair(self) -> BedrockProviderConfig:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give access_key_id and secret_access_key together, or neither")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self


class VertexProviderConfig(_ProviderBase):
    type: Literal["vertex"]
    project: str
    region: str = "us-east5"
    # A service-account JSON key file; unset: Application Default Credentials.
    credentials_file: str | None = None
    # The same key as JSON text (a project's stored credential); wins over credentials_file.
    credentials_json: SecretStr | None = None
    # A ready OAuth2 access token (tests, tokens minted elsewhere); wins over the above.
    access_token: SecretStr | None = None
    base_url: str | None = None  # the API root incl. /v1, like ANTHROPIC_VERTEX_BASE_URL
    betas: dict[str, str | None] = Field(default_factory=dict)
    beta_defaults: bool = True
    model_map: dict[str, str] = Field(default_factory=dict)

    _url = field_validator("base_url")(_optional_url)


class OpenAIProviderConfig(_ProviderBase):
    type: Literal["openai"]
    base_url: str = "https://api.openai.com/v1"  # up to, not including, /chat/completions
    api_key: SecretStr | None = None
    # Azure OpenAI: set api_version; model_map values are then deployment names.
    api_version: str | None = None
    # Anthropic model id (what the client asks for) -> upstream model (or deployment).
    model_map: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    # Claude Code's per-request billing line defeats the upstream's prefix cache.
    strip_billing_header: bool = True

    _url = field_validator("base_url")(check_url)

    @field_validator("api_version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        # YAML reads an unquoted 2024-10-21 as a date.
        return value.isoformat() if isinstance(value, date) else value


AnyProviderConfig = Annotated[
    AnthropicProviderConfig | BedrockProviderConfig | VertexProviderConfig | OpenAIProviderConfig,
    Field(discriminator="type"),
]
