"""Every kind of project credential parses for its provider type, and lays over the server's
provider config with only the credential fields changed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice.config.provider_credentials import InvalidCredential, apply, parse_credential
from sluice.config.providers import BedrockProviderConfig, VertexProviderConfig

SA = {
    "type": "service_account",
    "client_email": "a@p.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
    "private_key_id": "abcd1234",
}


@pytest.mark.parametrize(
    ("provider_type", "body", "kind", "last4"),
    [
        ("anthropic", {"api_key": "sk-ant-0001"}, "api_key", "0001"),
        ("openai", {"api_key": "sk-0002"}, "api_key", "0002"),
        ("bedrock", {"access_key_id": "AKIA", "secret_access_key": "s-0003"}, "aws_keys", "0003"),
        (
            "bedrock",
            {"access_key_id": "AKIA", "secret_access_key": "s-0004", "session_token": "t"},
            "aws_keys",
            "0004",
        ),
        ("bedrock", {"bearer_token": "ABSK-0005"}, "bearer_token", "0005"),
        ("vertex", {"access_token": "ya29.0006"}, "access_token", "0006"),
        ("vertex", {"service_account_json": SA}, "service_account", "1234"),
        ("vertex", {"service_account_json": json.dumps(SA)}, "service_account", "1234"),
    ],
)
def test_each_kind_parses(provider_type: str, body: dict[str, Any], kind: str, last4: str) -> None:
    cred = parse_credential(provider_type, body)
    assert (cred.kind, cred.last4) == (kind, last4)


@pytest.mark.parametrize(
    ("provider_type", "body"),
    [
        ("bedrock", {}),
        ("bedrock", {"access_key_id": "AKIA"}),
        ("bedrock", {"bearer_token": "b", "access_key_id": "AKIA", "secret_access_key": "s"}),
        ("bedrock", {"bearer_token": "b", "session_token": "t"}),
        ("bedrock", {"bearer_token": ""}),
        ("vertex", {}),
        ("vertex", {"access_token": "t", "service_account_json": SA}),
        ("vertex", {"service_account_json": {"type": "authorized_user"}}),
        ("vertex", {"service_account_json": "{not json"}),
        ("anthropic", {"bearer_token": "b"}),
    ],
)
def test_what_does_not_fit_is_refused(provider_type: str, body: dict[str, Any]) -> None:
    with pytest.raises(InvalidCredential):
        parse_credential(provider_type, body)


def test_apply_replaces_only_the_credential() -> None:
    server = BedrockProviderConfig.model_validate(
        {
            "type": "bedrock",
            "region": "eu-west-1",
            "access_key_id": "AKIASERVER",
            "secret_access_key": "server",
        }
    )
    mine = apply(server, parse_credential("bedrock", {"bearer_token": "ABSK-mine"}))
    assert isinstance(mine, BedrockProviderConfig)
    assert mine.bearer_token is not None and mine.bearer_token.get_secret_value() == "ABSK-mine"
    assert mine.access_key_id is None and mine.region == "eu-west-1"
    vertex = VertexProviderConfig.model_validate(
        {"type": "vertex", "project": "p", "credentials_file": "/etc/sa.json"}
    )
    sa = apply(vertex, parse_credential("vertex", {"service_account_json": SA}))
    assert isinstance(sa, VertexProviderConfig) and sa.credentials_file is None
    assert sa.credentials_json is not None
    assert json.loads(sa.credentials_json.get_secret_value()) == SA
