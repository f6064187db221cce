"""OpenTelemetry traces per Claude Code turn (docs/tracing.md)."""

from sluice.telemetry.service import Telemetry

__all__ = ["Telemetry"]
