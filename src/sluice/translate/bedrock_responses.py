"""Bedrock-shaped answers for the ``/bedrock`` ingress: Invoke's usage headers and the two
control-plane listings Claude Code reads in Bedrock mode (pure, no IO).

* InvokeModel returns the Anthropic Message JSON as its body and reports usage in headers
  (protocols.md §5.1): ``x-amzn-bedrock-input-token-count``, ``-output-token-count``,
  ``-invocation-latency`` and, with caching, ``-cache-read-input-token-count`` and
  ``-cache-write-input-token-count``.
* ``GET /inference-profiles`` (ListInferenceProfiles) and ``GET /foundation-models``
  (ListFoundationModels): field names and required members from botocore's ``bedrock``
  service model (2023-04-20); the tests parse the output with botocore's restJson parser.
  Model ids come from ``to_bedrock_model``; system-defined profiles carry a geography prefix
  (``us.`` by default) and route to the foundation model without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from sluice.translate.bedrock import base_model_id, to_bedrock_model

__all__ = ["bedrock_invoke_headers", "list_foundation_models", "list_inference_profiles"]

# Anthropic usage field → header suffix (after x-amzn-bedrock-).
_USAGE_HEADERS: Final = (
    ("input_tokens", b"input-token-count"),
    ("output_tokens", b"output-token-count"),
    ("cache_read_input_tokens", b"cache-read-input-token-count"),
    ("cache_creation_input_tokens", b"cache-write-input-token-count"),
)
_REQUIRED_COUNTS: Final = 2  # input and output are always sent; cache counts when reported


def bedrock_invoke_headers(
    message: Mapping[str, Any], *, latency_ms: int | None = None
) -> list[tuple[bytes, bytes]]:
    """The usage headers InvokeModel adds to a Message body. Input and output counts are
    always present (0 when the Message lacks them); cache counts only when the usage has
    them; the latency only when given (milliseconds, the caller's measurement)."""
    usage = message.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    out: list[tuple[bytes, bytes]] = []
    for i, (field, suffix) in enumerate(_USAGE_HEADERS):
        value = usage.get(field)
        if not isinstance(value, int) or isinstance(value, bool):
            if i >= _REQUIRED_COUNTS:
                continue
            value = 0
        out.append((b"x-amzn-bedrock-" + suffix, str(value).encode()))
    if latency_ms is not None:
        out.append((b"x-amzn-bedrock-invocation-latency", str(max(0, latency_ms)).encode()))
    return out


def _foundation_ids(
    models: Iterable[tuple[str, str]], extra: Mapping[str, str] | None
) -> list[tuple[str, str, str]]:
    """(Bedrock id as mapped, its foundation model id, display name), once per mapped id;
    names Bedrock can't serve, and ARNs (application profiles), are left out."""
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    for name, display in models:
        mapped = to_bedrock_model(name, extra)
        if mapped is None or mapped in seen:
            continue
        base = base_model_id(mapped)
        if not base.startswith("anthropic."):
            continue
        seen.add(mapped)
        out.append((mapped, base, display))
    return out


def _model_arn(region: str, base: str) -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{base}"


def list_foundation_models(
    models: Iterable[tuple[str, str]],
    *,
    region: str = "us-east-1",
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """ListFoundationModels' body for ``(Anthropic model id, display name)`` pairs."""
    summaries: list[dict[str, Any]] = []
    bases: set[str] = set()
    for _mapped, base, display in _foundation_ids(models, extra):
        if base in bases:
            continue  # two profiles of one model (us. and eu.) are one foundation model
        bases.add(base)
        summaries.append(
            {
                "modelArn": _model_arn(region, base),
                "modelId": base,
                "modelName": display,
                "providerName": "Anthropic",
                "inputModalities": ["TEXT", "IMAGE"],
                "outputModalities": ["TEXT"],
                "responseStreamingSupported": True,
                "customizationsSupported": [],
                "inferenceTypesSupported": ["ON_DEMAND"],
                "modelLifecycle": {"status": "ACTIVE"},
            }
        )
    return {"modelSummaries": summaries}


def list_inference_profiles(
    models: Iterable[tuple[str, str]],
    *,
    region: str = "us-east-1",
    account_id: str = "",
    geo: str = "us",
    regions: Sequence[str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """ListInferenceProfiles' body (``type=SYSTEM_DEFINED``) for ``(Anthropic model id,
    display name)`` pairs. A mapped id with a geography prefix is its own profile; a base id
    gets ``geo``. ``regions`` (default: ``region``) are the ones the profile routes to;
    ``account_id`` may stay empty, as the ARN pattern allows."""
    summaries: list[dict[str, Any]] = []
    for mapped, base, display in _foundation_ids(models, extra):
        profile_id = mapped if mapped != base else f"{geo}.{base}"
        prefix = profile_id.split(".", 1)[0].upper()
        summaries.append(
            {
                "inferenceProfileName": f"{prefix} {display}",
                "description": f"Routes requests to {display} in {prefix} regions.",
                "inferenceProfileArn": (
                    f"arn:aws:bedrock:{region}:{account_id}:inference-profile/{profile_id}"
                ),
                "models": [{"modelArn": _model_arn(r, base)} for r in (regions or [region])],
                "inferenceProfileId": profile_id,
                "status": "ACTIVE",
                "type": "SYSTEM_DEFINED",
            }
        )
    return {"inferenceProfileSummaries": summaries}
