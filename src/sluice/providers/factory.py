"""One place that turns a provider's config into its Provider."""

from __future__ import annotations

import aiohttp

from sluice.config.providers import (
    AnthropicProviderConfig,
    AnyProviderConfig,
    BedrockProviderConfig,
    OpenAIProviderConfig,
    VertexProviderConfig,
)
from sluice.providers.anthropic import AnthropicProvider
from sluice.providers.base import Provider
from sluice.providers.bedrock import BedrockProvider
from sluice.providers.openai import OpenAIProvider
from sluice.providers.vertex import VertexProvider


def build_provider(
    provider_id: str, config: AnyProviderConfig, session: aiohttp.ClientSession
) -> Provider:
    if isinstance(config, AnthropicProviderConfig):
        return AnthropicProvider(provider_id, config, session)
    if isinstance(config, BedrockProviderConfig):
        return BedrockProvider(provider_id, config, session)
    if isinstance(config, VertexProviderConfig):
        return VertexProvider(provider_id, config, session)
    if isinstance(config, OpenAIProviderConfig):
        return OpenAIProvider(provider_id, config, session)
    raise TypeError(f"unknown provider config {type(config).__name__}")
