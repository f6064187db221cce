"""The request bodies the benchmark sends: a tiny one and two real Claude Code requests."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loadgen import Workload

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "claude-code"
SMALL_BODY: dict[str, Any] = {
    "model": "claude-haiku-4-5-20251001",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "say hi"}],
}
# Connection-level and credential headers are the client library's business, not the fixture's.
_DROP = frozenset(
    {"authorization", "x-api-key", "host", "content-length", "connection", "accept-encoding"}
)


@dataclass(frozen=True)
class BodyCase:
    """One body in two variants: non-streaming (no ``stream`` field) and SSE (``stream: true``)."""

    name: str
    label: str
    json: Workload
    sse: Workload


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _case(
    name: str, label: str, path: str, body: dict[str, Any], headers: list[tuple[str, str]]
) -> BodyCase:
    plain = {k: v for k, v in body.items() if k != "stream"}
    streaming = {**plain, "stream": True}
    hdrs = tuple(headers)
    return BodyCase(
        name,
        label,
        Workload(f"{name}-json", path, _encode(plain), hdrs),
        Workload(f"{name}-sse", path, _encode(streaming), hdrs),
    )


def _fixture(name: str, label: str, file: str, api_key: str) -> BodyCase:
    record = json.loads((FIXTURES / file).read_text())
    headers = [(k, v) for k, v in record["headers"] if k.lower() not in _DROP]
    headers.append(("x-api-key", api_key))
    return _case(name, label, record["path"], record["body"], headers)


def body_cases(api_key: str) -> list[BodyCase]:
    """small (~100 B), Claude Code tool-loop turn (~76 KB), Claude Code print (~124 KB)."""
    small_headers = [
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", api_key),
    ]
    return [
        _case("small", "small (~100 B)", "/v1/messages", SMALL_BODY, small_headers),
        _fixture("cc76k", "Claude Code 76 KB", "10-tool-loop-turn1.json", api_key),
        _fixture("cc124k", "Claude Code 124 KB", "07-print-haiku-4-5.json", api_key),
    ]


def long_turn_case(api_key: str, steps: int = 100, result_bytes: int = 5000) -> BodyCase:
    """The 76 KB request's headers, system prompt and tools, 100 steps into a tool loop
    (~620 KB; ``cc-long``): each step an assistant ``tool_use`` and a user ``tool_result``
    of 5 KB, the cache marker on the last. Every request of it is the same one, the next
    request of a long turn, as a gateway that saw the one before sees it."""
    record = json.loads((FIXTURES / "10-tool-loop-turn1.json").read_text())
    body = dict(record["body"])
    messages: list[dict[str, Any]] = [body["messages"][0]]
    for n in range(steps):
        use = {"type": "tool_use", "id": f"toolu_{n:04d}", "name": "Read", "input": {"n": n}}
        text = {"type": "text", "text": "Reading the next file. " * 8}
        messages.append({"role": "assistant", "content": [text, use]})
        result = {
            "type": "tool_result",
            "tool_use_id": f"toolu_{n:04d}",
            "content": "x" * result_bytes,
        }
        messages.append({"role": "user", "content": [result]})
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    body["messages"] = messages
    headers = [(k, v) for k, v in record["headers"] if k.lower() not in _DROP]
    headers.append(("x-api-key", api_key))
    return _case("cc-long", "Claude Code 100-step tool loop", record["path"], body, headers)


def rekey(case: BodyCase, api_key: str, tag: str) -> BodyCase:
    """The same bodies sent with another virtual key; workload names get ``-tag`` (wrk scripts)."""

    def swap(work: Workload) -> Workload:
        headers = tuple((k, api_key if k.lower() == "x-api-key" else v) for k, v in work.headers)
        return replace(work, name=f"{work.name}-{tag}", headers=headers)

    return replace(case, json=swap(case.json), sse=swap(case.sse))
