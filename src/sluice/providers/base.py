"""The provider seam.

A provider turns an ``UpstreamRequest`` (one attempt, frozen: it knows nothing of the request
context) into an ``UpstreamResponse``: a status, client-facing headers, and an async iterator
of body bytes already in the client's wire format (Anthropic SSE or JSON). Auth signing, URL
shapes and translation live behind it; fallback and circuit breaking live outside it
(``core.fallback``), which builds one request per attempt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec


class UpstreamRequest(msgspec.Struct, frozen=True):  # a Struct: built in C, per attempt
    """What one attempt sends: the client's request as the gateway forwards it."""

    endpoint: str  # messages | count_tokens
    path: str  # the client's path (the Anthropic lane sends it as is)
    query: str  # the client's query string, without ``?``
    # The client's headers as received (each provider picks what crosses); read-only.
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes  # the body to send (aliases spliced, cache edits applied)
    model: str | None  # the Anthropic model id to send; None when the body named none
    stream: bool
    attempt: int = 1  # 1-based: the second provider of a fallback chain sends attempt 2
    ingress: str = "anthropic"  # the door the client came by (bedrock, vertex, openai)
    # The client's own body when it came by another door and the gateway changed none of its
    # content: a provider of that door's kind sends it as it is (the raw lane).
    client_body: bytes | None = None
    # The model id as that door named it (``us.anthropic.claude-opus-5-5``), when resolution
    # kept the model: a provider of the door's kind may send it as is.
    client_model: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    display_name: str
    created_at: str = "1970-01-01T00:00:00Z"
    description: str = ""  # shown by Claude Code's gateway model discovery


def display_name_for(model_id: str) -> str:
    """``claude-opus-4-8`` -> ``Claude Opus 4.8``; dated ids keep their date out of the name."""
    parts = [p for p in model_id.split("-") if not (p.isdigit() and len(p) == 8)]
    words: list[str] = []
    for part in parts:
        if part.isdigit() and words and words[-1][-1:].isdigit():
            words[-1] += f".{part}"
        else:
            words.append(part.capitalize() if not part.isdigit() else part)
    return " ".join(words)


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    content_type: str
    body: AsyncIterator[bytes]
    read_all: Callable[[], Awaitable[bytes]]
    # Release the connection. ``abort=True`` closes it: used when the client went away or the
    # stream failed, so an upstream that is still sending is cancelled at once.
    close: Callable[[bool], None]
    upstream_request_id: str | None = None
    # The body's wire shape: "anthropic", or "openai" when an OpenAI client's raw lane relays
    # the upstream's Chat Completions answer untranslated (Bedrock's raw stream is known by its
    # content type).
    shape: str = "anthropic"

    @property
    def is_sse(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    @property
    def is_event_stream(self) -> bool:
        """Bedrock's own stream, relayed as it is (the raw Bedrock lane)."""
        return self.content_type.startswith("application/vnd.amazon.eventstream")


class Provider(Protocol):
    id: str
    kind: str

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send ``request.body`` to ``request.endpoint`` for ``request.model``; raise
        ``ProviderError``/``ProviderTimeout`` when no response headers could be had.

        An upstream error status comes back as an ``UpstreamResponse`` whose status is the
        Anthropic equivalent and whose body is an Anthropic JSON error (``retry-after``
        kept). A request the upstream cannot express raises a 400 ``GatewayError``."""
        ...

    def model_id_for(self, model: str) -> str | None:
        """This upstream's id for an Anthropic model id; None when it cannot serve it (a
        fallback chain skips the provider)."""
        ...

    def can_count_tokens(self, model: str) -> bool:
        """Whether ``send`` serves endpoint ``count_tokens`` for ``model``."""
        ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def close(self) -> None: ...
