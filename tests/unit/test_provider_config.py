"""Provider configs: the union on ``type``, closed models, problems reported by path, secrets
redacted, and the factory building the right Provider."""

from __future__ import annotations

import aiohttp
import pytest

from sluice.config import (
    AnthropicProviderConfig,
    BedrockProviderConfig,
    ConfigProblems,
    OpenAIProviderConfig,
    ProviderConfig,
    VertexProviderConfig,
    parse_config,
)
from sluice.providers.factory import build_provider

YAML = """
providers:
  a: {type: anthropic, api_key: sk-ant-secret-a}
  b:
    type: bedrock
    region: eu-west-1
    access_key_id: AKIDSECRETB
    secret_access_key: secret-b
    model_map: {claude-opus-4-8: eu.anthropic.claude-opus-4-8-v1}
    betas: {my-beta: my-beta-renamed}
  v: {type: vertex, project: proj, access_token: secret-v}
  o:
    type: openai
    api_key: secret-o
    api_version: 2024-10-21
    model_map: {claude-sonnet-4-6: gpt-4.1}
    headers: {x-tenant: secret-h}
"""


def test_union_on_type() -> None:
    cfg = parse_config(YAML)
    kinds = {k: type(v) for k, v in cfg.providers.items()}
    assert kinds == {
        "a": AnthropicProviderConfig,
        "b": BedrockProviderConfig,
        "v": VertexProviderConfig,
        "o": OpenAIProviderConfig,
    }
    assert ProviderConfig is AnthropicProviderConfig  # the old name still builds the demo
    o = cfg.providers["o"]
    assert isinstance(o, OpenAIProviderConfig) and o.api_version == "2024-10-21"
    text = repr(cfg)
    for secret in ("sk-ant-secret-a", "secret-b", "secret-v", "secret-o", "secret-h"):
        assert secret not in text


@pytest.mark.parametrize(
    ("yaml", "problem"),
    [
        ("p: {type: bedrock, colour: red}", "providers.p.colour: unknown field"),
        ("p: {type: vertex}", "providers.p.project: Field required"),
        ("p: {type: openai, base_url: nope}", "providers.p.base_url: not a URL"),
        ("p: {type: bedrock, access_key_id: AK}", "providers.p: give access_key_id"),
        ("p: {type: azure}", "providers.p: Input tag 'azure'"),
    ],
)
def test_problems_name_the_path(yaml: str, problem: str) -> None:
    with pytest.raises(ConfigProblems) as info:
        parse_config("providers:\n  " + yaml)
    assert any(str(p).startswith(problem) for p in info.value.problems), info.value.problems


async def test_factory_builds_each_kind() -> None:
    cfg = parse_config(YAML)
    async with aiohttp.ClientSession() as session:
        built = {pid: build_provider(pid, pcfg, session) for pid, pcfg in cfg.providers.items()}
    assert {pid: p.kind for pid, p in built.items()} == {
        "a": "anthropic",
        "b": "bedrock",
        "v": "vertex",
        "o": "openai",
    }
    assert built["a"].model_id_for("claude-opus-4-8") == "claude-opus-4-8"
    assert built["b"].model_id_for("claude-opus-4-8") == "eu.anthropic.claude-opus-4-8-v1"
    assert (
        built["b"].model_id_for("claude-haiku-4-5") == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    )
    assert built["b"].model_id_for("gpt-4.1") is None
    assert built["v"].model_id_for("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5@20250929"
    assert built["o"].model_id_for("claude-sonnet-4-6") == "gpt-4.1"
    assert built["o"].model_id_for("claude-opus-4-8") is None
    counts = {pid: p.can_count_tokens("claude-sonnet-4-6") for pid, p in built.items()}
    assert counts == {"a": True, "b": False, "v": True, "o": False}
    assert [m.id for m in await built["o"].list_models()] == ["claude-sonnet-4-6"]
    assert "claude-opus-4-8" in [m.id for m in await built["b"].list_models()]
