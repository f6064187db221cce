"""The admin plane: an authenticated REST API (FastAPI) on a listener of its own.

It sits beside ``server`` (the inference app) and never imports it: the inference hot path
stays raw ASGI and gains no dependency from this package.
"""
