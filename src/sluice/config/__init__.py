"""Closed, typed configuration: the server file (``sluice.yaml``) and the per-key document."""

from sluice.config.loader import ConfigProblem, ConfigProblems, load_config, parse_config
from sluice.config.models import ProviderConfig, ServerConfig, SluiceConfig
from sluice.config.vk import VirtualKeyConfig

__all__ = [
    "ConfigProblem",
    "ConfigProblems",
    "ProviderConfig",
    "ServerConfig",
    "SluiceConfig",
    "VirtualKeyConfig",
    "load_config",
    "parse_config",
]
