"""ASGI app assembly, lifespan, and the inbound routes."""
