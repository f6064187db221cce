"""The exporter: spans go out through fastotel or the OpenTelemetry SDK's OTLP/HTTP exporter
and arrive, decoded by opentelemetry-proto in a real receiver, with every field intact; the
standard OTEL_* variables apply; sampling is deterministic by trace id."""

from __future__ import annotations

import importlib.util

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pydantic import ValidationError

from sluice.config.models import TracingConfig
from sluice.telemetry.export import Exporter, default_target, parse_headers, sampled
from sluice.telemetry.spans import SpanRecord

from otlp_receiver import OtlpReceiver


async def test_fastotel_sends_what_the_sdk_sends() -> None:
    """fastotel is handed light stand-ins for the SDK's ``ReadableSpan``: what arrives must be
    field for field what the SDK's own exporter sends for the same records."""
    records = [
        SpanRecord(2**127 + 3, 2**63 + 1, 9, "chat m", "client", 5, 9, {"a": [1, 2], "b": "x"}),
        SpanRecord(2**127 + 3, 9, None, "invoke_agent m", "internal", 1, 10, {}, error="bad"),
        SpanRecord(1, 2, 3, "execute_tool t", "weird-kind", 2, 3, {"f": 0.5, "t": True}),
    ]
    arrived = {}
    for kind in ("fastotel", "sdk"):
        async with OtlpReceiver() as receiver:
            cfg = {"enabled": True, "otlp_endpoint": receiver.url, "exporter": kind}
            exporter = Exporter(TracingConfig.model_validate(cfg), {})
            exporter.submit(records)
            assert await exporter.idle(10)
            await exporter.stop()
        arrived[kind] = sorted(receiver.spans, key=lambda s: s.name)
    assert len(arrived["sdk"]) == 3
    assert arrived["fastotel"] == arrived["sdk"]


@pytest.mark.parametrize("kind", ["fastotel", "sdk"])
async def test_spans_arrive_intact_through_either_exporter(kind: str) -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": 1240,
        "negative": -3,
        "langwatch.cost_usd": 0.012345,
        "gen_ai.request.stream": True,
        "gen_ai.response.finish_reasons": ["tool_use"],
        "unicode": "héllo ✓" * 3000,
    }
    chat = SpanRecord(2**128 - 1, 2**64 - 1, 7, "chat m", "client", 10**18, 10**18 + 5, attrs)
    root = SpanRecord(5, 6, None, "invoke_agent x", "internal", 1, 2, {}, error="boom")
    async with OtlpReceiver() as receiver:
        exporter = Exporter(
            TracingConfig.model_validate(
                {"enabled": True, "otlp_endpoint": receiver.url, "exporter": kind}
            ),
            {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod"},
        )
        exporter.submit([chat, root])
        assert await exporter.idle(10)
        await exporter.stop()
    assert exporter.exported == 2 and exporter.dropped == 0
    first, second = sorted(receiver.spans, key=lambda s: s.name)
    assert first.resource["service.name"] == "sluice"
    assert first.resource["deployment.environment"] == "prod"
    assert first.scope == "sluice.gateway"
    assert (first.trace_id, first.span_id) == ("f" * 32, "f" * 16)
    assert first.parent_span_id == (7).to_bytes(8, "big").hex()
    assert first.name == "chat m" and first.kind == Span.SPAN_KIND_CLIENT
    assert (first.start_ns, first.end_ns) == (10**18, 10**18 + 5)
    assert first.attributes == attrs
    assert first.status_code == Status.STATUS_CODE_UNSET
    assert second.parent_span_id == "" and second.kind == Span.SPAN_KIND_INTERNAL
    assert second.status_code == Status.STATUS_CODE_ERROR and second.status_message == "boom"


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
    assert target.headers == {"authorization": "Bearer abc", "x-tenant": "t1"}
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


def test_fastotel_exporter_needs_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TracingConfig.model_validate({"exporter": "fastotel"}).exporter == "fastotel"
    assert TracingConfig().exporter == "sdk"
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastotel" else real(name, *a)
    )
    with pytest.raises(ValidationError, match=r"pip install 'sluice\[fastotel\]'"):
        TracingConfig.model_validate({"exporter": "fastotel"})
