"""RequestContext: the one object that travels along the request path.

It holds the request id, the raw body bytes, the few peeked fields, the resolved key, the
chosen route, and the usage and outcome collected so far. Pipeline steps read and write it;
nothing else travels between steps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from sluice.base.asgi import Receive, Send
from sluice.base.json_spans import raw_elements
from sluice.base.settlement import Settlement
from sluice.base.usage import ResponseFacts
from sluice.core.disconnect import DisconnectWatch
from sluice.core.keepalive import Keepalive
from sluice.core.tool_guard import ToolGuard
from sluice.errors import GatewayError, InvalidRequest
from sluice.governance.budgets import Admitted
from sluice.governance.rate_limits import Lease
from sluice.governance.virtual_key import VirtualKey
from sluice.providers.base import UpstreamResponse


class Door(Protocol):
    """A way in other than Anthropic Messages (Bedrock, Vertex, OpenAI Chat). Once the body is
    read, it rewrites the request as a Messages request (body, path, headers), so every step
    after it governs one shape; the response goes back through the door's ``outbound``."""

    @property
    def name(self) -> str:
        """The ledger's ingress: bedrock | vertex | openai."""
        ...

    def inbound(self, ctx: RequestContext) -> None: ...

    def outbound(self, send: Send, ctx: RequestContext) -> Send:
        """``send`` for this door's client: Anthropic's shapes in, the door's shapes out
        (``ctx.upstream_shape`` says when a raw lane's answer is already the door's own)."""
        ...


@dataclass(slots=True)
class RequestContext:
    request_id: str
    endpoint: str  # messages | count_tokens | models
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    started: float  # monotonic seconds
    started_ms: int  # wall clock, for the ledger
    body: bytes = b""  # what goes upstream (edited in place by aliases, strip, cache mode)
    received_body: bytes = b""  # exactly what the client sent
    # Peeked from a parsed copy of the body; the body itself is never re-serialized.
    model_requested: str | None = None
    model_sent: str | None = None
    upstream_model: str | None = None  # the provider's own id for model_sent
    model_known: bool = False  # declared by an alias or a provider's list (metrics labels)
    stream: bool = False
    max_tokens: int | None = None
    session_id: str | None = None
    # Claude Code's gateway hint headers (CLAUDE_CODE_GATEWAY_HINT_HEADERS=1), capped.
    request_class: str | None = None
    agent_id: str | None = None
    parent_agent_id: str | None = None
    key: VirtualKey | None = None
    provider_id: str | None = None
    provider_kind: str | None = None
    attempts: int = 0  # providers called (fallback: more than one)
    attempt_log: list[str] = field(default_factory=list)  # "provider:outcome" per provider
    status: int = 0
    error_code: str | None = None
    upstream_request_id: str | None = None
    upstream_headers_at: float | None = None
    client_disconnected: bool = False
    facts: ResponseFacts = field(default_factory=ResponseFacts.empty)
    parsed: dict[str, Any] | None = None
    messages_raw: Any = None  # the `messages` array as raw JSON (msgspec.Raw), unparsed
    message_list: list[Any] | None = None  # its elements, raw, on first use (message_items)
    mcp_servers_raw: Any = None  # `mcp_servers` as raw JSON when the body has it
    policy_violation: str | None = None  # the rule that refused or cut this request
    fingerprint: bytes | None = None  # model + messages hash (tool verdict lookups)
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Awaited just before a relayed response's last byte (durable ledger acknowledgement).
    before_end: Callable[[], Awaitable[None]] | None = None
    # What the steps hold between admit and settle (core/steps/).
    receive: Receive | None = None  # the ASGI channel the body (then a disconnect) comes on
    disconnect: DisconnectWatch | None = None
    lease: Lease | None = None  # rate limits
    reservation: Admitted | None = None  # budgets
    guard: ToolGuard | None = None  # the response-side tool policy
    upstream: UpstreamResponse | None = None  # None after dispatch: count_tokens estimate
    relayed: bool = False
    keepalive: Keepalive | None = None  # pings on a started, silent stream
    refusal: GatewayError | None = None  # the error the gateway answered with, if any
    settled: bool = False
    # Built and committed before the last byte (durable acknowledgement); steps and observers
    # get it after the response is out.
    committed: Settlement | None = None
    door: Door | None = None  # None: Anthropic Messages, the native door
    content_edited: bool = False  # a step changed the body beyond its model (strip, cache)
    door_model: str | None = None  # the model id as the door's path named it (a Bedrock id)
    upstream_shape: str = "anthropic"  # the answer's wire shape ("openai": the raw lane)
    ingress: str = "anthropic"

    def parsed_body(self) -> dict[str, Any]:
        """The request body as parsed JSON, parsed on first use (only policies need it)."""
        if self.parsed is None:
            try:
                parsed = orjson.loads(self.body)
            except orjson.JSONDecodeError as exc:  # the peek skips strings without UTF-8 checks
                raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
            self.parsed = parsed if isinstance(parsed, dict) else {}
        return self.parsed

    def message_items(self) -> list[Any]:
        """``messages_raw`` split into its elements (raw JSON), once a request: URL policy
        reads the last one and tracing walks back from it, and on a long history the split is
        a scan as long as the body peek's own."""
        if self.message_list is None:
            raw = self.messages_raw
            self.message_list = raw_elements(raw) if raw is not None else []
        return self.message_list

    def client_gone(self) -> None:
        self.client_disconnected = True

    def header(self, name: bytes) -> bytes | None:
        """First value of a request header; ``name`` must be lower-case."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None
