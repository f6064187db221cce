"""The Vertex-shaped door under ``/vertex/v1``: Claude Code in Vertex mode
(``CLAUDE_CODE_USE_VERTEX=1``, ``ANTHROPIC_VERTEX_BASE_URL=http://gw/vertex/v1``,
``CLAUDE_CODE_SKIP_VERTEX_AUTH=1``, the virtual key as ``ANTHROPIC_AUTH_TOKEN``).

Routes (the project and region in the path are ignored for routing):
``projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict``,
``…:streamRawPredict`` and ``…/models/count-tokens:rawPredict``.

The body is a Messages body with ``anthropic_version`` inside and the model in the path; the
answer is Anthropic's own JSON and SSE, so the way out is the native one, byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sluice.base.asgi import Send
from sluice.core.context import RequestContext
from sluice.core.doors.messages_body import as_messages_body, member, model_from_path
from sluice.errors import InvalidRequest
from sluice.translate.vertex import from_vertex_model

PREFIX = "/vertex/v1/"
_ROUTE = re.compile(
    r"projects/[^/]+/locations/[^/]+/publishers/anthropic/models/"
    r"(?P<model>[^/:]+):(?P<method>rawPredict|streamRawPredict)"
)


@dataclass(frozen=True, slots=True)
class VertexDoor:
    endpoint: str  # messages | count_tokens
    model_id: str | None  # from the path; None for count-tokens (the body names it)
    stream: bool | None  # True: streamRawPredict; None: the body says
    name: str = "vertex"

    def inbound(self, ctx: RequestContext) -> None:
        model_id = self.model_id
        if model_id is None:
            named = member(ctx.body, "model")
            if not isinstance(named, str):
                raise InvalidRequest("`model`: field required (a Vertex model id).", param="model")
            model_id = named
        model = from_vertex_model(model_from_path(model_id))
        ctx.body = as_messages_body(
            ctx.body, model, remove=("anthropic_version",), stream=self.stream
        )
        ctx.path = "/v1/messages" if self.endpoint == "messages" else "/v1/messages/count_tokens"
        ctx.query = ""

    def outbound(self, send: Send, ctx: RequestContext) -> Send:
        return send  # Vertex answers in Anthropic's own JSON and SSE


def match_vertex(path: str) -> VertexDoor | None:
    """The door for a POST under ``/vertex/v1/``; None when no Vertex route matches."""
    found = _ROUTE.fullmatch(path, len(PREFIX))
    if found is None:
        return None
    model, method = found["model"], found["method"]
    if model == "count-tokens":
        return VertexDoor("count_tokens", None, None) if method == "rawPredict" else None
    return VertexDoor("messages", model, True if method == "streamRawPredict" else None)
