"""Which door a POST outside ``/v1/messages`` came by: Vertex (``/vertex/v1/…``), Bedrock
(``/bedrock/model/…``) or OpenAI Chat Completions (``/v1/chat/completions``)."""

from __future__ import annotations

from sluice.core.doors.vertex import PREFIX as VERTEX_PREFIX
from sluice.core.doors.vertex import VertexDoor, match_vertex

AnyDoor = VertexDoor


def match_door(path: str) -> AnyDoor | None:
    if path.startswith(VERTEX_PREFIX):
        return match_vertex(path)
    return None
