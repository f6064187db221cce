"""Anthropic Messages ⇄ Google Vertex AI (Anthropic models).

Vertex serves the first-party Messages body and SSE with three differences (protocols.md §6):
``model`` moves into the URL (count-tokens keeps it in the body), ``anthropic_version`` must be
``vertex-2023-10-16``, and ``stream`` stays in the body (the SDK reads it without removing it,
the opposite of Bedrock). Betas stay in the ``anthropic-beta`` header, filtered per upstream
(peers.md §3E). Everything here is pure; the OAuth token source is ``providers/vertex_auth.py``.

Sources of ``DEFAULT_BETA_ALLOWLIST`` (a value is the name Vertex accepts; ``None`` marks a
known refusal, dropped like any name missing from the table):

* LiteLLM ``anthropic_beta_headers_config.json`` (``vertex_ai``): context-1m-2025-08-07,
  interleaved-thinking-2025-05-14, computer-use-2025-01-24 and -2025-11-24,
  tool-search-tool-2025-10-19 and advanced-tool-use-2025-11-20 → tool-search-tool-2025-10-19
  (Envoy's alias map does the same). Its ``None`` entries: effort, fine-grained-tool-streaming,
  output-128k, token-efficient-tools, files-api, mcp-client, code-execution, web-fetch,
  skills, structured-outputs-2025-11-13.
* Vertex 400s "Unexpected value(s) ... for the anthropic-beta header" seen in the wild:
  prompt-caching-scope-2026-01-05 (claude-code #21625, #21767, LiteLLM #19984),
  effort-2025-11-24 and adaptive-thinking-2026-01-28 (claude-code #34802),
  web-search-2025-03-05 on count-tokens (claude-code #12429), prompt-caching-2024-07-31
  (vercel/ai #4431), structured-outputs-2025-12-15 (new-api #2975).
* First-party only (the Claude Code fixtures' headers): claude-code, oauth,
  thinking-token-count, mid-conversation-system.
* context-management-2025-06-27: dropped. peers.md §3E (Envoy AI Gateway) says Vertex refuses
  ``context_management``; LiteLLM's newer table lists the beta as accepted. Dropping the beta
  alone turns the body field into "Extra inputs are not permitted", so ``members_without_beta``
  names the body members to cut with it: an operator who allowlists the beta keeps both.

Model ids use ``@`` before the date (``claude-sonnet-4-5@20250929``); newer ones have no date.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Collection, Mapping
from typing import Any, Final

import orjson

# The allowlist semantics are Bedrock's exactly; one implementation for both clouds.
from sluice.translate.bedrock import filter_betas
from sluice.translate.members import rewrite_top_level

__all__ = [
    "BETA_GATED_MEMBERS",
    "DEFAULT_BETA_ALLOWLIST",
    "DEFAULT_MODEL_MAP",
    "VERTEX_ANTHROPIC_VERSION",
    "count_tokens_url",
    "filter_betas",
    "from_vertex_model",
    "members_without_beta",
    "predict_url",
    "to_vertex_body",
    "to_vertex_count_tokens_body",
    "to_vertex_model",
    "vertex_base_url",
    "vertex_error_to_anthropic",
]

VERTEX_ANTHROPIC_VERSION: Final = "vertex-2023-10-16"
_VERSION_MEMBER: Final = b'"anthropic_version":"' + VERTEX_ANTHROPIC_VERSION.encode() + b'"'

DEFAULT_BETA_ALLOWLIST: Final[dict[str, str | None]] = {
    # LiteLLM vertex_ai table
    "context-1m-2025-08-07": "context-1m-2025-08-07",
    "interleaved-thinking-2025-05-14": "interleaved-thinking-2025-05-14",
    "computer-use-2025-01-24": "computer-use-2025-01-24",
    "computer-use-2025-11-24": "computer-use-2025-11-24",
    "tool-search-tool-2025-10-19": "tool-search-tool-2025-10-19",
    "advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19",
    "effort-2025-11-24": None,
    "fine-grained-tool-streaming-2025-05-14": None,
    "output-128k-2025-02-19": None,
    "token-efficient-tools-2025-02-19": None,
    "files-api-2025-04-14": None,
    "mcp-client-2025-04-04": None,
    "mcp-client-2025-11-20": None,
    "code-execution-2025-08-25": None,
    "web-fetch-2025-09-10": None,
    "skills-2025-10-02": None,
    "structured-outputs-2025-11-13": None,
    # refused by Vertex in reported 400s
    "prompt-caching-scope-2026-01-05": None,
    "adaptive-thinking-2026-01-28": None,
    "web-search-2025-03-05": None,
    "prompt-caching-2024-07-31": None,
    "structured-outputs-2025-12-15": None,
    # first-party only
    "claude-code-20250219": None,
    "oauth-2025-04-20": None,
    "thinking-token-count-2026-05-13": None,
    "mid-conversation-system-2026-04-07": None,
    # peers.md §3E; cut context_management with it (members_without_beta)
    "context-management-2025-06-27": None,
}

# Top-level body member → the beta it needs; without the beta upstream, the member must go too.
BETA_GATED_MEMBERS: Final[dict[str, str]] = {
    "context_management": "context-management-2025-06-27",
}

# Aliases map to the dated id, which Vertex certainly serves; from_vertex_model reverses only
# the dated (irregular) entries, so an id never turns back into an alias.
DEFAULT_MODEL_MAP: Final[dict[str, str]] = {
    "claude-3-5-sonnet-20241022": "claude-3-5-sonnet-v2@20241022",  # the one irregular id
    "claude-sonnet-4-5": "claude-sonnet-4-5@20250929",
    "claude-haiku-4-5": "claude-haiku-4-5@20251001",
    "claude-opus-4-5": "claude-opus-4-5@20251101",
    "claude-opus-4-1": "claude-opus-4-1@20250805",
    "claude-sonnet-4-0": "claude-sonnet-4@20250514",
    "claude-opus-4-0": "claude-opus-4@20250514",
}

_DATED = re.compile(r"(?P<name>claude-[a-z0-9.-]+?)-(?P<date>\d{8})")
_RESOURCE_PREFIX = re.compile(r"^(?:.*/)?publishers/anthropic/models/")


def members_without_beta(betas: Collection[str]) -> frozenset[str]:
    """Body members to cut because the beta they need is not among ``betas`` (the names
    that will be forwarded)."""
    return frozenset(m for m, beta in BETA_GATED_MEMBERS.items() if beta not in betas)


# --- body -----------------------------------------------------------------------------------


def _rewrite_members(body: bytes, remove: Collection[str], head: bytes) -> bytes:
    """Cut the top-level members named in ``remove`` and put ``head`` (``"k":v,...``) first;
    every other member's value keeps its exact bytes."""
    return rewrite_top_level(body, remove, [head])


def to_vertex_body(body: bytes, *, drop: Collection[str] = ()) -> bytes:
    """A Messages request body as a rawPredict/streamRawPredict body.

    ``model`` and any client-sent ``anthropic_version`` are cut; ``anthropic_version`` goes
    first; ``stream`` stays. Members named in ``drop`` (see ``members_without_beta``) are cut
    too. Raises ``ValueError`` (``SpanError``) if the body is not a JSON object.
    """
    remove = {"model", "anthropic_version", *drop}
    return _rewrite_members(body, remove, _VERSION_MEMBER)


def to_vertex_count_tokens_body(
    body: bytes, vertex_model: str, *, drop: Collection[str] = ()
) -> bytes:
    """A count_tokens body for ``count-tokens:rawPredict``: the model stays in the body, as the
    Vertex id, right after ``anthropic_version`` (which the SDK adds here too)."""
    remove = {"model", "anthropic_version", *drop}
    head = _VERSION_MEMBER + b',"model":' + orjson.dumps(vertex_model)
    return _rewrite_members(body, remove, head)


# --- model ids ------------------------------------------------------------------------------


def to_vertex_model(model: str, extra: Mapping[str, str] | None = None) -> str | None:
    """The Vertex model id for an Anthropic model name; None for a non-Claude name.

    ``extra`` wins over the defaults. ``name-YYYYMMDD`` becomes ``name@YYYYMMDD``; an id that
    already has ``@`` and an undated ``claude-*`` name (newer models) are kept.
    """
    if extra is not None and model in extra:
        return extra[model]
    if model in DEFAULT_MODEL_MAP:
        return DEFAULT_MODEL_MAP[model]
    if not model.startswith("claude-"):
        return None
    if "@" in model:
        return model
    dated = _DATED.fullmatch(model)
    return f"{dated['name']}@{dated['date']}" if dated else model


def from_vertex_model(model_id: str, extra: Mapping[str, str] | None = None) -> str:
    """The Anthropic model name for a Vertex id or publisher-model resource name (reverse of
    the maps; otherwise ``@YYYYMMDD`` becomes ``-YYYYMMDD`` and ``@default``-style tags go)."""
    model_id = _RESOURCE_PREFIX.sub("", model_id)
    for name, vertex_id in (extra or {}).items():
        if vertex_id == model_id:
            return name
    for name, vertex_id in DEFAULT_MODEL_MAP.items():
        if vertex_id == model_id and _DATED.fullmatch(name):
            return name
    name, _, version = model_id.partition("@")
    return f"{name}-{version}" if version.isdigit() and len(version) == 8 else name


# --- URLs -----------------------------------------------------------------------------------


def vertex_base_url(region: str) -> str:
    """The API root for a location, ``/v1`` included (what ``ANTHROPIC_VERTEX_BASE_URL`` holds)."""
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    if region in ("us", "eu"):  # multi-region endpoints
        return f"https://aiplatform.{region}.rep.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


def _models_prefix(project: str, region: str, base_url: str | None) -> str:
    base = (base_url or vertex_base_url(region)).rstrip("/")
    project_q = urllib.parse.quote(project, safe="")
    region_q = urllib.parse.quote(region, safe="")
    return f"{base}/projects/{project_q}/locations/{region_q}/publishers/anthropic/models"


def predict_url(
    project: str, region: str, model: str, stream: bool, base_url: str | None = None
) -> str:
    """The rawPredict (JSON) or streamRawPredict (SSE) URL. ``model`` is a Vertex id, one
    path segment with ``@`` left literal as the SDK sends it."""
    action = "streamRawPredict" if stream else "rawPredict"
    model_q = urllib.parse.quote(model, safe="@")
    return f"{_models_prefix(project, region, base_url)}/{model_q}:{action}"


def count_tokens_url(project: str, region: str, base_url: str | None = None) -> str:
    """The token-count URL; the model goes in the body (protocols.md §4.3)."""
    return f"{_models_prefix(project, region, base_url)}/count-tokens:rawPredict"


# --- errors ---------------------------------------------------------------------------------

# google.rpc.Code name → (HTTP status, Anthropic error type).
_GOOGLE_CODES: Final[dict[str, tuple[int, str]]] = {
    "INVALID_ARGUMENT": (400, "invalid_request_error"),
    "FAILED_PRECONDITION": (400, "invalid_request_error"),
    "OUT_OF_RANGE": (400, "invalid_request_error"),
    "UNAUTHENTICATED": (401, "authentication_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "NOT_FOUND": (404, "not_found_error"),
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "UNAVAILABLE": (529, "overloaded_error"),
    "DEADLINE_EXCEEDED": (504, "timeout_error"),
    "INTERNAL": (500, "api_error"),
    "UNKNOWN": (500, "api_error"),
    "DATA_LOSS": (500, "api_error"),
}
_BY_HTTP: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _type_for_http(status: int) -> str:
    return _BY_HTTP.get(status, "api_error" if status >= 500 else "invalid_request_error")


def _is_anthropic_error(payload: Any) -> bool:
    if not isinstance(payload, dict) or payload.get("type") != "error":
        return False
    error = payload.get("error")
    return isinstance(error, dict) and isinstance(error.get("type"), str)


def vertex_error_to_anthropic(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Anthropic error body) for an error response from Vertex.

    Anthropic's own errors, which Vertex passes through, are kept as they are. Google errors
    (``{"error": {"code", "message", "status"}}``, sometimes inside a one-element list) are
    mapped by their ``status`` name, then by HTTP status; so is anything unparseable.
    """
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if _is_anthropic_error(payload):
        return status, payload
    if isinstance(payload, list) and payload:
        payload = payload[0]
    google = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(google, dict):
        error_type = _type_for_http(status)
        return status, _anthropic(error_type, f"Vertex AI returned HTTP {status}")
    code = google.get("status")
    message = google.get("message")
    text = message if isinstance(message, str) and message else f"Vertex AI error {status}"
    if isinstance(code, str) and code in _GOOGLE_CODES:
        mapped, error_type = _GOOGLE_CODES[code]
        return mapped, _anthropic(error_type, text)
    return status, _anthropic(_type_for_http(status), text)


def _anthropic(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}
