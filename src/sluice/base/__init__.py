"""The bottom of the house: types and helpers every layer may use (ASGI aliases and response
rendering, the clock, usage facts, JSON spans, policy patterns, identifier echo)."""
