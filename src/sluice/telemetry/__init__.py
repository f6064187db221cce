"""Telemetry: OpenTelemetry spans, Prometheus metrics and the per-request access log."""
