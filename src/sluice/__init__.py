"""Sluice: a self-hosted AI gateway for Claude Code."""

__version__ = "0.1.0"
