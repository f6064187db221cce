"""Anthropic errors rendered as bedrock-runtime errors, and the table's two directions."""

from __future__ import annotations

from typing import Any

import httpx2
import orjson
import pytest
from anthropic import AnthropicBedrock, APIStatusError
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.parsers import RestJSONParser

from sluice.translate.bedrock import bedrock_exception_to_anthropic as reexported
from sluice.translate.bedrock_errors import (
    _ROWS,
    ERROR_TYPE_SUFFIX,
    bedrock_error,
    bedrock_exception_for,
    bedrock_exception_to_anthropic,
    stream_exception_type,
)

RUNTIME = ServiceModel(Loader().load_service_model("bedrock-runtime", "service-2"))
INVOKE = RUNTIME.operation_model("InvokeModel")
MODELED_STATUS = {e.name: e.metadata["error"]["httpStatusCode"] for e in INVOKE.error_shapes}
STREAM_MEMBERS = set(RUNTIME.shape_for("ResponseStream").members) - {"chunk"}

ANTHROPIC_TYPES = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
]


def test_the_reexport_is_the_same_function() -> None:
    assert reexported is bedrock_exception_to_anthropic


def test_row_statuses_are_the_ones_botocore_models() -> None:
    for row in _ROWS:
        if row.name in MODELED_STATUS:
            assert row.bedrock_status == MODELED_STATUS[row.name], row.name


@pytest.mark.parametrize(
    ("error_type", "status", "name"),
    [
        ("invalid_request_error", 400, "ValidationException"),
        ("authentication_error", 401, "UnrecognizedClientException"),
        ("billing_error", 400, "AccessDeniedException"),
        ("permission_error", 403, "AccessDeniedException"),
        ("not_found_error", 404, "ResourceNotFoundException"),
        ("request_too_large", 413, "ValidationException"),
        ("rate_limit_error", 429, "ThrottlingException"),
        ("api_error", 500, "InternalServerException"),
        ("overloaded_error", 529, "ServiceUnavailableException"),
        ("timeout_error", 504, "ModelTimeoutException"),
        # Sluice's own codes, by status
        ("budget_exceeded", 402, "AccessDeniedException"),
        ("rate_limited", 429, "ThrottlingException"),
        ("provider_error", 502, "InternalServerException"),
        ("provider_timeout", 504, "ModelTimeoutException"),
        ("virtual_key_disabled", 403, "AccessDeniedException"),
        ("invalid_api_key", 401, "UnrecognizedClientException"),
        ("tool_not_allowed", 418, "ValidationException"),
    ],
)
def test_exception_names(error_type: str, status: int, name: str) -> None:
    assert bedrock_exception_for(error_type, status) == name


@pytest.mark.parametrize("error_type", ANTHROPIC_TYPES)
def test_anthropic_to_bedrock_and_back(error_type: str) -> None:
    """The inverse of the egress mapping, wherever Bedrock has a name for the type."""
    name = bedrock_exception_for(error_type, 500)
    _status, body = bedrock_exception_to_anthropic(name, "m")
    back = body["error"]["type"]
    one_way = {
        "authentication_error": "permission_error",  # Bedrock's names are all AWS creds
        "billing_error": "permission_error",
        "request_too_large": "invalid_request_error",
    }
    assert back == one_way.get(error_type, error_type)


def test_every_bedrock_name_round_trips_to_a_name_of_the_same_type() -> None:
    for row in _ROWS:
        _status, body = bedrock_exception_to_anthropic(row.name, "m")
        again = bedrock_exception_for(body["error"]["type"], row.bedrock_status)
        assert bedrock_exception_to_anthropic(again, "m")[1] == body


@pytest.mark.parametrize("error_type", [*ANTHROPIC_TYPES, "budget_exceeded", "weird"])
def test_stream_exception_types_are_response_stream_members(error_type: str) -> None:
    assert stream_exception_type(error_type) in STREAM_MEMBERS


@pytest.mark.parametrize(
    ("error_type", "stream_name"),
    [
        ("rate_limit_error", "throttlingException"),
        ("overloaded_error", "serviceUnavailableException"),
        ("api_error", "internalServerException"),
        ("invalid_request_error", "validationException"),
        ("timeout_error", "modelTimeoutException"),
        ("permission_error", "internalServerException"),  # no stream member for it
    ],
)
def test_stream_exception_type(error_type: str, stream_name: str) -> None:
    assert stream_exception_type(error_type) == stream_name
    if stream_name != "internalServerException":
        _status, body = bedrock_exception_to_anthropic(stream_name, "m")
        assert body["error"]["type"] == error_type


def _botocore_error(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Any:
    response = {
        "status_code": status,
        "headers": {k.decode(): v.decode() for k, v in headers},
        "body": body,
    }
    return RestJSONParser().parse(response, INVOKE.output_shape)["Error"]


@pytest.mark.parametrize(
    ("status", "error_type", "want_status", "want_name"),
    [
        (400, "invalid_request_error", 400, "ValidationException"),
        (401, "authentication_error", 401, "UnrecognizedClientException"),
        (403, "permission_error", 403, "AccessDeniedException"),
        (404, "not_found_error", 404, "ResourceNotFoundException"),
        (413, "request_too_large", 413, "ValidationException"),
        (429, "rate_limit_error", 429, "ThrottlingException"),
        (500, "api_error", 500, "InternalServerException"),
        (529, "overloaded_error", 503, "ServiceUnavailableException"),
        (503, "overloaded_error", 503, "ServiceUnavailableException"),
        (200, "rate_limit_error", 429, "ThrottlingException"),  # not an error status
    ],
)
def test_bedrock_error_parses_with_botocore(
    status: int, error_type: str, want_status: int, want_name: str
) -> None:
    got_status, headers, body = bedrock_error(status, error_type, 'Nope "quoted" ✓')
    assert got_status == want_status
    assert dict(headers) == {
        b"content-type": b"application/json",
        b"x-amzn-errortype": (want_name + ERROR_TYPE_SUFFIX).encode(),
    }
    assert orjson.loads(body) == {"message": 'Nope "quoted" ✓'}
    error = _botocore_error(got_status, headers, body)
    assert error["Code"] == want_name
    assert error["Message"] == 'Nope "quoted" ✓'


@pytest.mark.parametrize(("status", "error_type"), [(429, "rate_limit_error"), (404, "x")])
def test_the_anthropic_bedrock_client_raises_by_status(status: int, error_type: str) -> None:
    got_status, headers, body = bedrock_error(status, error_type, "no")

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(got_status, headers=[(k, v) for k, v in headers], content=body)

    client = AnthropicBedrock(
        api_key="bedrock-api-key",  # bearer auth: no boto3 session needed
        aws_region="us-east-1",
        base_url="http://sluice.test/bedrock",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )
    with pytest.raises(APIStatusError) as caught:
        client.messages.create(
            model="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert caught.value.status_code == status
    assert caught.value.body == {"message": "no"}
