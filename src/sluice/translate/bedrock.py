"""Anthropic Messages ⇄ AWS Bedrock InvokeModel (Anthropic models): pure functions, no IO.

Bedrock serves the same Messages body with four differences (protocols.md §5.2): ``model``
moves into the URL, ``stream`` is chosen by the endpoint, ``anthropic_version`` must be
``bedrock-2023-05-31``, and betas travel in the body as an ``anthropic_beta`` array. Betas
need a per-upstream allowlist (peers.md §3E): forwarding all of them gets "invalid beta
flag", dropping the one that goes with a body field (``context_management``) gets "Extra
inputs are not permitted".

Sources of ``DEFAULT_BETA_ALLOWLIST`` (a value is the name Bedrock accepts; ``None`` marks a
known first-party-only beta, dropped like any name missing from the table):

* AWS user guide, InvokeModel request for Claude: ``anthropic_beta`` with
  computer-use-2024-10-22 (its example).
* one-api's ``BedrockAllowedBetaFlags``: computer-use-2025-01-24 and -2025-11-24,
  token-efficient-tools-2025-02-19, interleaved-thinking-2025-05-14, output-128k-2025-02-19,
  dev-full-thinking-2025-05-14, context-1m-2025-08-07, context-management-2025-06-27.
  context-management must pass: Claude Code sends ``context_management`` with it, and the
  field without the beta is "Extra inputs are not permitted" (peers.md §3E).
* fine-grained-tool-streaming-2025-05-14: kept because Claude Code sends it (protocols.md §0)
  and losing it changes how tool input streams; new-api's Bedrock preset drops it (and
  output-128k, token-efficient-tools), so revisit these first if Bedrock refuses them.
* advanced-tool-use-2025-11-20 → tool-search-tool-2025-10-19: Envoy AI Gateway's alias map
  and Anthropic's tool-search doc (Bedrock and Vertex use the older name).
* ``None``: claude-code, oauth, effort, thinking-token-count, prompt-caching-scope,
  mid-conversation-system (first-party only, from the Claude Code fixtures' headers; one-api
  does forward effort, so a body's ``output_config.effort`` may need dropping too);
  prompt-caching-2024-07-31 and extended-cache-ttl-2025-04-11 (Envoy probed: refused);
  redact-thinking-2026-02-12 (magpie #176: refused); server tools and the Files API.

Model ids (protocols.md §5.3): cross-region ``us.`` inference profiles, because many newer
models refuse on-demand calls to the base id. Claude Code's newest defaults
(``claude-opus-4-8``, ``claude-sonnet-5``) have no documented Bedrock id yet: map them per
deployment through ``extra``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Final

import orjson

# Re-exported: the error table moved to bedrock_errors, shared with the /bedrock ingress.
from sluice.translate.bedrock_errors import bedrock_exception_to_anthropic
from sluice.translate.members import rewrite_top_level

__all__ = [
    "BEDROCK_ANTHROPIC_VERSION",
    "DEFAULT_BETA_ALLOWLIST",
    "DEFAULT_MODEL_MAP",
    "INVOCATION_METRICS_KEY",
    "base_model_id",
    "bedrock_exception_to_anthropic",
    "filter_betas",
    "from_bedrock_model",
    "invoke_url",
    "to_bedrock_body",
    "to_bedrock_model",
]

BEDROCK_ANTHROPIC_VERSION: Final = "bedrock-2023-05-31"
# Bedrock adds this key to the message_stop event of a stream (protocols.md §5.7).
INVOCATION_METRICS_KEY: Final = "amazon-bedrock-invocationMetrics"

DEFAULT_BETA_ALLOWLIST: Final[dict[str, str | None]] = {
    # AWS user guide
    "computer-use-2024-10-22": "computer-use-2024-10-22",
    # one-api
    "computer-use-2025-01-24": "computer-use-2025-01-24",
    "computer-use-2025-11-24": "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19": "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14": "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19": "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14": "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07": "context-1m-2025-08-07",
    "context-management-2025-06-27": "context-management-2025-06-27",
    # Claude Code sends it (new-api drops it)
    "fine-grained-tool-streaming-2025-05-14": "fine-grained-tool-streaming-2025-05-14",
    # Envoy AI Gateway alias map
    "tool-search-tool-2025-10-19": "tool-search-tool-2025-10-19",
    "advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19",
    # first-party only
    "claude-code-20250219": None,
    "oauth-2025-04-20": None,
    "effort-2025-11-24": None,
    "thinking-token-count-2026-05-13": None,
    "prompt-caching-scope-2026-01-05": None,
    "mid-conversation-system-2026-04-07": None,
    "prompt-caching-2024-07-31": None,
    "extended-cache-ttl-2025-04-11": None,
    "redact-thinking-2026-02-12": None,
    "files-api-2025-04-14": None,
    "web-search-2025-03-05": None,
    "web-fetch-2025-09-10": None,
    "code-execution-2025-08-25": None,
    "mcp-client-2025-11-20": None,
}

# Dated names first: from_bedrock_model answers with the first name mapped to an id.
DEFAULT_MODEL_MAP: Final[dict[str, str]] = {
    "claude-sonnet-4-5-20250929": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-haiku-4-5-20251001": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-opus-4-5-20251101": "us.anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-opus-4-1-20250805": "us.anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-opus-4-6": "us.anthropic.claude-opus-4-6-v1",
    "claude-sonnet-4-6": "us.anthropic.claude-sonnet-4-6",
    "claude-sonnet-4-5": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-haiku-4-5": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-opus-4-5": "us.anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-opus-4-1": "us.anthropic.claude-opus-4-1-20250805-v1:0",
}

_GEO_PREFIX = re.compile(r"^(?:us|eu|apac|au|jp|ca|us-gov|global)\.")
_VERSION_SUFFIX = re.compile(r"-v\d+(?::\d+)?$")
# Top-level members Bedrock must not see, or that this module sets itself.
_REPLACED_MEMBERS: Final = frozenset({"model", "stream", "anthropic_version", "anthropic_beta"})


# --- betas ----------------------------------------------------------------------------------


def filter_betas(header_value: str | None, allowlist: Mapping[str, str | None]) -> list[str]:
    """The ``anthropic-beta`` header's names that the upstream accepts, renamed, in order,
    each once. Names missing from ``allowlist`` or mapped to ``None`` are dropped."""
    out: list[str] = []
    for raw in (header_value or "").split(","):
        name = allowlist.get(raw.strip())
        if name and name not in out:
            out.append(name)
    return out


# --- body -----------------------------------------------------------------------------------


def to_bedrock_body(body: bytes, betas: list[str]) -> bytes:
    """A Messages request body as an InvokeModel body.

    ``model``, ``stream`` and any client-sent ``anthropic_version``/``anthropic_beta`` are cut
    out; ``anthropic_version`` (and ``anthropic_beta`` when ``betas`` is non-empty) go first.
    Every other member's value keeps its exact bytes, so prompt text, thinking signatures and
    key order are untouched. Raises ``ValueError`` (``SpanError``) if the body is not a JSON
    object.
    """
    head = [b'"anthropic_version":"' + BEDROCK_ANTHROPIC_VERSION.encode() + b'"']
    if betas:
        head.append(b'"anthropic_beta":' + orjson.dumps(betas))
    return rewrite_top_level(body, _REPLACED_MEMBERS, head)


# --- model ids ------------------------------------------------------------------------------


def to_bedrock_model(model: str, extra: Mapping[str, str] | None = None) -> str | None:
    """The Bedrock model id for an Anthropic model name; None when Bedrock can't serve it.

    ``extra`` wins over the defaults. A name that already is a Bedrock id or an ARN is kept.
    """
    if extra is not None and model in extra:
        return extra[model]
    if model in DEFAULT_MODEL_MAP:
        return DEFAULT_MODEL_MAP[model]
    if model.startswith("arn:") or model.startswith("anthropic.") or ".anthropic." in model:
        return model
    return None


def from_bedrock_model(model_id: str, extra: Mapping[str, str] | None = None) -> str:
    """The Anthropic model name for a Bedrock id, profile id or ARN (reverse of the maps;
    otherwise the geo prefix, ``anthropic.`` and ``-v1:0`` are taken off)."""
    for table in (extra or {}, DEFAULT_MODEL_MAP):
        for name, bedrock_id in table.items():
            if bedrock_id == model_id:
                return name
    name = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    name = _GEO_PREFIX.sub("", name)
    if not name.startswith("anthropic."):
        return name  # an application profile's opaque id, or not an Anthropic model
    return _VERSION_SUFFIX.sub("", name.removeprefix("anthropic."))


def base_model_id(model_id: str) -> str:
    """A model or inference-profile id without its geography prefix (``us.anthropic.x`` →
    ``anthropic.x``): the foundation model a system-defined profile routes to."""
    return _GEO_PREFIX.sub("", model_id)


def invoke_url(region: str, model_id: str, stream: bool, base_url: str | None = None) -> str:
    """The InvokeModel(WithResponseStream) URL. The model id is one path segment, so ``:`` and
    an ARN's ``/`` are percent-encoded; the signature covers this exact path."""
    base = (base_url or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")
    action = "invoke-with-response-stream" if stream else "invoke"
    return f"{base}/model/{urllib.parse.quote(model_id, safe='')}/{action}"
