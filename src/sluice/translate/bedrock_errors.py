"""Bedrock exceptions ⇄ Anthropic errors, both ways, from one table (pure, no IO).

``_ROWS`` is the single source: Bedrock → Anthropic reads every row (the egress to a Bedrock
upstream, ``bedrock_exception_to_anthropic``); Anthropic → Bedrock (the ``/bedrock`` ingress,
``bedrock_error`` and ``stream_exception_type``) takes the *first* row for an Anthropic type,
so the two directions are inverses wherever a type has a row (tests check the round trip).

Names are PascalCase as in the HTTP ``x-amzn-ErrorType`` header (protocols.md §5.6); a stream's
``:exception-type`` spells the same member lowerCamel (§5.5), and only the members of
bedrock-runtime's ``ResponseStream`` union may appear there.

Statuses: the Bedrock status of a row is what the real service sends with that exception
(botocore's ``bedrock-runtime`` model); the Anthropic status is what the egress reports.
``bedrock_error`` keeps the caller's status (Sluice's statuses are tuned to Claude Code's
retry rules, which its Bedrock client applies by status too) except 529, which Bedrock never
sends: it becomes 503, ServiceUnavailableException.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import orjson

__all__ = [
    "ERROR_TYPE_SUFFIX",
    "bedrock_error",
    "bedrock_exception_for",
    "bedrock_exception_to_anthropic",
    "stream_exception_type",
]

# What the real service appends to the exception name in x-amzn-ErrorType; botocore keeps
# the part before the first ":" (parsers.py, _inject_error_code).
ERROR_TYPE_SUFFIX: Final = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


class _Row(NamedTuple):
    name: str  # PascalCase exception name
    bedrock_status: int
    anthropic_status: int
    anthropic_type: str
    in_stream: bool  # a member of bedrock-runtime's ResponseStream union


# Order matters for Anthropic → Bedrock: the first row of a type is how it is rendered.
_ROWS: Final = (
    _Row("ValidationException", 400, 400, "invalid_request_error", True),
    _Row("ThrottlingException", 429, 429, "rate_limit_error", True),
    _Row("ServiceQuotaExceededException", 400, 429, "rate_limit_error", False),
    _Row("ServiceUnavailableException", 503, 529, "overloaded_error", True),
    _Row("ModelNotReadyException", 429, 529, "overloaded_error", False),
    _Row("InternalServerException", 500, 500, "api_error", True),
    _Row("ModelStreamErrorException", 424, 500, "api_error", True),
    _Row("ModelErrorException", 424, 500, "api_error", False),
    _Row("AccessDeniedException", 403, 403, "permission_error", False),
    # The gateway's AWS credentials are wrong, not the client's key: not a 401 on egress.
    _Row("UnrecognizedClientException", 403, 403, "permission_error", False),
    _Row("MissingAuthenticationTokenException", 403, 403, "permission_error", False),
    _Row("InvalidSignatureException", 403, 403, "permission_error", False),
    _Row("ExpiredTokenException", 403, 403, "permission_error", False),
    _Row("ModelTimeoutException", 408, 504, "timeout_error", True),
    _Row("ResourceNotFoundException", 404, 404, "not_found_error", False),
)

# Anthropic types with no row of their own (one way only: Bedrock never sends them back).
_EXTRA_TYPES: Final[dict[str, str]] = {
    # What AWS answers an unknown access key or API key; the AWS SDKs do not retry it.
    "authentication_error": "UnrecognizedClientException",
    "billing_error": "AccessDeniedException",
    # Bedrock refuses an over-long input with a ValidationException.
    "request_too_large": "ValidationException",
}

# A type in neither table (Sluice's own codes, e.g. budget_exceeded) goes by its status.
_BY_STATUS: Final[dict[int, str]] = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    402: "AccessDeniedException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    413: "ValidationException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    431: "ValidationException",
    503: "ServiceUnavailableException",
    504: "ModelTimeoutException",
    529: "ServiceUnavailableException",
}

_BY_NAME: Final[dict[str, _Row]] = {row.name: row for row in _ROWS}
_FIRST_FOR_TYPE: Final[dict[str, _Row]] = {
    row.anthropic_type: row for row in reversed(_ROWS)
}  # reversed: the first row of a type wins
_UNKNOWN: Final = _BY_NAME["InternalServerException"]


# --- Bedrock → Anthropic (egress) -----------------------------------------------------------


def bedrock_exception_to_anthropic(exception_type: str, message: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Anthropic error body) for a Bedrock exception name, in either spelling
    (``ThrottlingException:http://...`` from a header, ``throttlingException`` from a frame).
    Unknown names become 500 ``api_error``."""
    name = exception_type.split(":", 1)[0].strip()
    row = _BY_NAME.get(name[:1].upper() + name[1:])
    status, error_type = (row.anthropic_status, row.anthropic_type) if row else (500, "api_error")
    text = message or name or "Bedrock error"
    return status, {"type": "error", "error": {"type": error_type, "message": text}}


# --- Anthropic → Bedrock (the /bedrock ingress) ---------------------------------------------


def bedrock_exception_for(anthropic_error_type: str, status: int) -> str:
    """The PascalCase Bedrock exception for an Anthropic error type; a type Bedrock has no
    name for (Sluice's own codes) is chosen by ``status``."""
    row = _FIRST_FOR_TYPE.get(anthropic_error_type)
    if row is not None:
        return row.name
    extra = _EXTRA_TYPES.get(anthropic_error_type)
    if extra is not None:
        return extra
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return "ValidationException" if 400 <= status < 500 else "InternalServerException"


def stream_exception_type(anthropic_error_type: str, status: int = 500) -> str:
    """The lowerCamel ``:exception-type`` of a mid-stream exception frame: a ResponseStream
    member, else ``internalServerException`` (the SDKs only model those members)."""
    row = _BY_NAME.get(bedrock_exception_for(anthropic_error_type, status), _UNKNOWN)
    name = row.name if row.in_stream else _UNKNOWN.name
    return name[:1].lower() + name[1:]


def bedrock_error(
    status: int, anthropic_error_type: str, message: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of an error answered as bedrock-runtime does: JSON
    ``{"message": ...}`` with the exception named in ``x-amzn-ErrorType``.

    The status is the caller's (see the module docstring), except 529 → 503 and a
    non-error status, which takes the Bedrock status of the chosen exception."""
    name = bedrock_exception_for(anthropic_error_type, status)
    if status == 529:
        status = 503
    elif not 400 <= status < 600:
        status = _BY_NAME[name].bedrock_status if name in _BY_NAME else 500
    headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-errortype", (name + ERROR_TYPE_SUFFIX).encode()),
    ]
    return status, headers, orjson.dumps({"message": message})
