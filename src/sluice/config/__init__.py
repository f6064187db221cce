"""Closed, typed configuration: the server file (``sluice.yaml``) and the per-key document."""

from sluice.config.loader import ConfigProblem, ConfigProblems, load_config, parse_config
from sluice.config.models import ProviderConfig, ServerConfig, SluiceConfig
from sluice.config.providers import (
    AnthropicProviderConfig,
    AnyProviderConfig,
    BedrockProviderConfig,
    OpenAIProviderConfig,
    VertexProviderConfig,
)
from sluice.config.vk import VirtualKeyConfig

__all__ = [
    "AnthropicProviderConfig",
    "AnyProviderConfig",
    "BedrockProviderConfig",
    "ConfigProblem",
    "ConfigProblems",
    "OpenAIProviderConfig",
    "ProviderConfig",
    "ServerConfig",
    "SluiceConfig",
    "VertexProviderConfig",
    "VirtualKeyConfig",
    "load_config",
    "parse_config",
]
