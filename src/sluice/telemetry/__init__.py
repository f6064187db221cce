"""Telemetry: OpenTelemetry traces per Claude Code turn (docs/tracing.md), Prometheus metrics
(docs/metrics.md) and the per-request access log."""

from sluice.telemetry.service import Telemetry

__all__ = ["Telemetry"]
