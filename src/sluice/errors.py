"""One error tree for everything Sluice refuses or fails at.

Each error knows its HTTP status, its code (which is also the Anthropic ``error.type``),
whether the client may retry, and whether a fallback to another provider may help.
Rendering to a client's API shape happens in :mod:`sluice.base.asgi`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Base class. Subclasses set ``http_status`` and ``code``; instances carry the message."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    should_retry: ClassVar[bool | None] = None  # None: let the client decide by status
    # The Anthropic ``error.type`` when a client reacts to it (Claude Code's retry and
    # /model hints match Anthropic's types); ``code`` stays Sluice's own, more precise name.
    wire_type: ClassVar[str | None] = None
    fallbackable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        tips: list[str] | None = None,
        meta: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # An instance may carry another status (an upstream's, when wrapping its error).
        self.status = status or self.http_status
        self.param = param
        self.tips = tips or []
        self.meta = meta or {}
        self.headers = headers or {}


class InvalidApiKey(GatewayError):
    http_status = 401
    code = "invalid_api_key"
    # Claude Code retries a 401 ten times over three minutes unless told not to.
    should_retry = False


class VirtualKeyDisabled(GatewayError):
    http_status = 403
    code = "virtual_key_disabled"


class VirtualKeyRevoked(GatewayError):
    http_status = 403
    code = "virtual_key_revoked"


class VirtualKeyExpired(GatewayError):
    http_status = 403
    code = "virtual_key_expired"


class InvalidRequest(GatewayError):
    http_status = 400
    code = "invalid_request_error"


class NotFound(GatewayError):
    http_status = 404
    code = "not_found_error"


class PayloadTooLarge(GatewayError):
    http_status = 413
    code = "payload_too_large"


class ProviderError(GatewayError):
    """The upstream could not be reached or broke the connection before answering."""

    http_status = 502
    code = "provider_error"
    fallbackable = True


class ProviderTimeout(GatewayError):
    http_status = 504
    code = "provider_timeout"
    fallbackable = True


class NoProviderConfigured(GatewayError):
    http_status = 400
    code = "no_provider_configured"


class InternalError(GatewayError):
    http_status = 500
    code = "internal_error"


class ToolNotAllowed(GatewayError):
    http_status = 403
    code = "tool_not_allowed"


class UrlNotAllowed(GatewayError):
    http_status = 403
    code = "url_not_allowed"


class ModelNotAllowed(GatewayError):
    http_status = 403
    code = "model_not_allowed"


class ModelNotRecognized(GatewayError):
    # Anthropic answers an unknown model 404 not_found_error, and Claude Code then tells the
    # user to pick another model; a 400 made it retry without betas and tools (6-8 requests).
    http_status = 404
    code = "model_not_recognized"
    wire_type = "not_found_error"


class BudgetExceeded(GatewayError):
    http_status = 402
    code = "budget_exceeded"


class BudgetUnavailable(GatewayError):
    http_status = 503
    code = "budget_unavailable"


class RateLimitUnavailable(GatewayError):
    """Rate limits cannot be counted (Redis unreachable) and are set to fail closed."""

    http_status = 503
    code = "rate_limit_unavailable"


class VerdictUnavailable(GatewayError):
    """Remembered tool verdicts cannot be looked up (Redis unreachable), set to fail closed."""

    http_status = 503
    code = "verdict_unavailable"


class RateLimited(GatewayError):
    http_status = 429
    code = "rate_limited"


class UnsupportedByProvider(InvalidRequest):
    """The request uses an Anthropic feature the chosen upstream cannot express (server tools,
    signed thinking for an OpenAI upstream): refused, never dropped silently."""


class RequestHeadersTooLarge(GatewayError):
    """431: the request line and headers are over ``server.max_header_bytes``, or there are
    more than ``server.max_headers`` lines. Typed like Anthropic's own size refusal."""

    http_status = 431
    code = "request_too_large"
    should_retry = False


class RequestTimeout(GatewayError):
    """408: the request head did not arrive within ``server.header_timeout_s``."""

    http_status = 408
    code = "request_timeout"


class TooManyConnections(GatewayError):
    """503: this process already holds ``server.max_connections`` open connections."""

    http_status = 503
    code = "overloaded_error"
    should_retry = True
