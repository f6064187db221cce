"""Invoke's usage headers and the Bedrock listings, checked against botocore's service model."""

from __future__ import annotations

import re
from typing import Any

import orjson
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.parsers import RestJSONParser

from sluice.testing.fake_bedrock import _METRIC_HEADERS
from sluice.translate.bedrock import DEFAULT_MODEL_MAP, from_bedrock_model, to_bedrock_model
from sluice.translate.bedrock_responses import (
    bedrock_invoke_headers,
    list_foundation_models,
    list_inference_profiles,
)

CONTROL = ServiceModel(Loader().load_service_model("bedrock", "service-2"))
MODELS = [
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5"),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5 (alias)"),  # same Bedrock id: listed once
    ("claude-opus-4-6", "Claude Opus 4.6"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ("gpt-4o", "Not on Bedrock"),
]


def _parse(operation: str, body: dict[str, Any]) -> Any:
    """The body as the AWS SDK reads it: through botocore's restJson parser."""
    shape = CONTROL.operation_model(operation).output_shape
    response = {"status_code": 200, "headers": {}, "body": orjson.dumps(body)}
    parsed = RestJSONParser().parse(response, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def _check_required(shape: Any, value: Any) -> None:
    """Every required member present, and no member the model does not know."""
    if shape.type_name == "structure":
        assert set(shape.required_members) <= set(value), (shape.name, value)
        assert set(value) <= set(shape.members), (shape.name, set(value) - set(shape.members))
        for name, member in value.items():
            _check_required(shape.members[name], member)
    elif shape.type_name == "list":
        for item in value:
            _check_required(shape.member, item)
    elif shape.type_name == "string" and shape.enum:
        assert value in shape.enum, (shape.name, value)


def _pattern(shape_name: str) -> re.Pattern[str]:
    return re.compile(CONTROL.shape_for(shape_name).metadata["pattern"])


# --- invoke headers -------------------------------------------------------------------------


def test_invoke_headers_from_the_message_usage() -> None:
    message = {
        "id": "msg_1",
        "usage": {
            "input_tokens": 25,
            "output_tokens": 12,
            "cache_read_input_tokens": 2048,
            "cache_creation_input_tokens": 768,
        },
    }
    assert bedrock_invoke_headers(message, latency_ms=420) == [
        (b"x-amzn-bedrock-input-token-count", b"25"),
        (b"x-amzn-bedrock-output-token-count", b"12"),
        (b"x-amzn-bedrock-cache-read-input-token-count", b"2048"),
        (b"x-amzn-bedrock-cache-write-input-token-count", b"768"),
        (b"x-amzn-bedrock-invocation-latency", b"420"),
    ]


def test_invoke_headers_are_the_ones_the_fake_bedrock_sends() -> None:
    usage = {"input_tokens": 1, "output_tokens": 2}
    usage |= {"cache_read_input_tokens": 3, "cache_creation_input_tokens": 4}
    names = {k for k, _v in bedrock_invoke_headers({"usage": usage}, latency_ms=1)}
    assert names == {b"x-amzn-bedrock-" + suffix.encode() for suffix, _m in _METRIC_HEADERS}


def test_invoke_headers_without_usage_or_cache() -> None:
    assert bedrock_invoke_headers({}) == [
        (b"x-amzn-bedrock-input-token-count", b"0"),
        (b"x-amzn-bedrock-output-token-count", b"0"),
    ]
    odd = {"usage": {"input_tokens": True, "output_tokens": 3, "cache_read_input_tokens": None}}
    assert bedrock_invoke_headers(odd, latency_ms=-5) == [
        (b"x-amzn-bedrock-input-token-count", b"0"),
        (b"x-amzn-bedrock-output-token-count", b"3"),
        (b"x-amzn-bedrock-invocation-latency", b"0"),
    ]


# --- listings -------------------------------------------------------------------------------


def test_foundation_models_parse_with_botocore() -> None:
    body = list_foundation_models(MODELS, region="eu-west-1")
    parsed = _parse("ListFoundationModels", body)
    assert parsed == body  # every field survives the AWS SDK's parse
    _check_required(CONTROL.shape_for("ListFoundationModelsResponse"), body)
    summaries = body["modelSummaries"]
    assert [s["modelId"] for s in summaries] == [
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-opus-4-6-v1",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
    ]
    first = summaries[0]
    assert first["modelArn"] == (
        "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"
    )
    assert (first["modelName"], first["providerName"]) == ("Claude Sonnet 4.5", "Anthropic")
    assert first["responseStreamingSupported"] is True
    assert first["modelLifecycle"] == {"status": "ACTIVE"}
    for summary in summaries:
        assert _pattern("BedrockModelId").fullmatch(summary["modelId"])
        assert _pattern("FoundationModelArn").fullmatch(summary["modelArn"])


def test_inference_profiles_parse_with_botocore() -> None:
    body = list_inference_profiles(
        MODELS, region="us-west-2", account_id="123456789012", regions=["us-east-1", "us-west-2"]
    )
    assert _parse("ListInferenceProfiles", body) == body
    _check_required(CONTROL.shape_for("ListInferenceProfilesResponse"), body)
    summaries = body["inferenceProfileSummaries"]
    assert [s["inferenceProfileId"] for s in summaries] == [
        DEFAULT_MODEL_MAP["claude-sonnet-4-5-20250929"],
        DEFAULT_MODEL_MAP["claude-opus-4-6"],
        DEFAULT_MODEL_MAP["claude-haiku-4-5"],
    ]
    sonnet = summaries[0]
    assert sonnet["inferenceProfileArn"] == (
        "arn:aws:bedrock:us-west-2:123456789012:inference-profile/"
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    )
    base = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert sonnet["models"] == [
        {"modelArn": f"arn:aws:bedrock:{r}::foundation-model/{base}"}
        for r in ("us-east-1", "us-west-2")
    ]
    assert sonnet["inferenceProfileName"] == "US Claude Sonnet 4.5"
    assert (sonnet["status"], sonnet["type"]) == ("ACTIVE", "SYSTEM_DEFINED")
    for summary in summaries:
        assert _pattern("InferenceProfileId").fullmatch(summary["inferenceProfileId"])
        assert _pattern("InferenceProfileArn").fullmatch(summary["inferenceProfileArn"])
        # ...and a client choosing the profile id reaches the same Bedrock model.
        profile_id = summary["inferenceProfileId"]
        assert to_bedrock_model(from_bedrock_model(profile_id)) == profile_id


def test_profiles_for_base_ids_get_the_geo_prefix_and_arns_are_left_out() -> None:
    extra = {
        "claude-custom": "anthropic.claude-custom-v1:0",
        "claude-app": "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/ab",
        "claude-eu": "eu.anthropic.claude-eu-v1:0",
    }
    models = [(name, name.title()) for name in extra]
    profiles = list_inference_profiles(models, geo="apac", extra=extra)
    assert [s["inferenceProfileId"] for s in profiles["inferenceProfileSummaries"]] == [
        "apac.anthropic.claude-custom-v1:0",
        "eu.anthropic.claude-eu-v1:0",
    ]
    assert profiles["inferenceProfileSummaries"][1]["inferenceProfileName"] == "EU Claude-Eu"
    _check_required(CONTROL.shape_for("ListInferenceProfilesResponse"), profiles)
    foundation = list_foundation_models(models, extra=extra)
    assert [s["modelId"] for s in foundation["modelSummaries"]] == [
        "anthropic.claude-custom-v1:0",
        "anthropic.claude-eu-v1:0",
    ]


def test_empty_listings() -> None:
    assert list_foundation_models([]) == {"modelSummaries": []}
    assert list_inference_profiles([]) == {"inferenceProfileSummaries": []}
    assert _parse("ListInferenceProfiles", list_inference_profiles([])) == {
        "inferenceProfileSummaries": []
    }
