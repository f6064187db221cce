"""Incremental SSE parsing and the relay tap."""
