"""The hand-written OTLP protobuf encoding, decoded by opentelemetry-proto; and the standard
OTEL_EXPORTER_OTLP_* variables."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from sluice.config.models import TracingConfig
from sluice.telemetry.export import default_target, sampled
from sluice.telemetry.otlp_wire import SpanEncoder, parse_headers, resource_attributes
from sluice.telemetry.spans import SpanRecord


def decode(body: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    return message


def test_spans_round_trip_through_opentelemetry_proto() -> None:
    encoder = SpanEncoder()
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": 1240,
        "negative": -3,
        "langwatch.cost_usd": 0.012345,
        "gen_ai.request.stream": True,
        "flag_off": False,
        "gen_ai.response.finish_reasons": ["tool_use"],
        "unicode": "héllo ✓" * 3000,  # longer than the 16 KiB length table
    }
    chat = SpanRecord(2**128 - 1, 2**64 - 1, 7, "chat m", "client", 10**18, 10**18 + 5, attrs)
    root = SpanRecord(5, 6, None, "invoke_agent x", "internal", 1, 2, {}, error="boom")
    spans = [encoder.span(chat), encoder.span(root), encoder.span(chat)]  # cached 2nd time
    resource = resource_attributes({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod"})
    message = decode(encoder.request(spans, resource, ("sluice.gateway", "0.1.0")))
    [resource_spans] = message.resource_spans
    got_resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert got_resource["service.name"] == "sluice"
    assert got_resource["deployment.environment"] == "prod"
    [scope_spans] = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("sluice.gateway", "0.1.0")
    first, second, third = scope_spans.spans
    assert first == third
    assert first.trace_id == b"\xff" * 16 and first.span_id == b"\xff" * 8
    assert first.parent_span_id == (7).to_bytes(8, "big")
    assert first.name == "chat m" and first.kind == Span.SPAN_KIND_CLIENT
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (10**18, 10**18 + 5)
    values = {a.key: a.value for a in first.attributes}
    assert values["gen_ai.operation.name"].string_value == "chat"
    assert values["gen_ai.usage.input_tokens"].int_value == 1240
    assert values["negative"].int_value == -3
    assert values["langwatch.cost_usd"].double_value == 0.012345
    assert values["gen_ai.request.stream"].bool_value is True
    assert values["flag_off"].HasField("bool_value") and not values["flag_off"].bool_value
    assert [
        v.string_value for v in values["gen_ai.response.finish_reasons"].array_value.values
    ] == ["tool_use"]
    assert values["unicode"].string_value == "héllo ✓" * 3000
    assert first.flags & 0x1 and first.status.code == Status.STATUS_CODE_UNSET
    assert second.parent_span_id == b"" and second.kind == Span.SPAN_KIND_INTERNAL
    assert second.status.code == Status.STATUS_CODE_ERROR and second.status.message == "boom"


def test_standard_environment_variables() -> None:
    off = TracingConfig(enabled=True)
    assert default_target(off, {}) is None  # store only
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc,x-tenant=t1",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
    }
    target = default_target(off, env)
    assert target is not None
    assert target.endpoint == "http://collector:4318/v1/traces"
    assert target.headers == {"Authorization": "Bearer abc", "x-tenant": "t1"}
    assert target.timeout_s == 2.5
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://other:4318/custom"
    assert default_target(off, env).endpoint == "http://other:4318/custom"  # type: ignore[union-attr]
    configured = TracingConfig.model_validate(
        {"otlp_endpoint": "https://lw.example/api/otel/v1/traces", "headers": {"x-tenant": "mine"}}
    )
    target = default_target(configured, env)
    assert target is not None and target.endpoint == "https://lw.example/api/otel/v1/traces"
    assert target.headers["x-tenant"] == "mine"  # config wins over the environment
    assert parse_headers("bad,=x,k=v") == {"k": "v"}


def test_sampling_is_deterministic_by_trace_id() -> None:
    ids = [i * 0x9E3779B97F4A7C15 % 2**128 for i in range(1, 4001)]
    kept = [t for t in ids if sampled(t, 0.25)]
    assert 800 < len(kept) < 1200
    assert kept == [t for t in ids if sampled(t, 0.25)]
    assert all(sampled(t, 1.0) for t in ids) and not any(sampled(t, 0.0) for t in ids)
