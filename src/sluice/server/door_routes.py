"""Which door a POST outside ``/v1/messages`` came by: Vertex (``/vertex/v1/…``), Bedrock
(``/bedrock/model/…``) or OpenAI Chat Completions (``/v1/chat/completions``)."""

from __future__ import annotations

from sluice.core.doors.bedrock import PREFIX as BEDROCK_PREFIX
from sluice.core.doors.bedrock import BedrockDoor, match_bedrock
from sluice.core.doors.openai_chat import PATH as CHAT_PATH
from sluice.core.doors.openai_chat import OpenAIChatDoor
from sluice.core.doors.vertex import PREFIX as VERTEX_PREFIX
from sluice.core.doors.vertex import VertexDoor, match_vertex

AnyDoor = VertexDoor | BedrockDoor | OpenAIChatDoor


def match_door(path: str) -> AnyDoor | None:
    if path == CHAT_PATH:
        return OpenAIChatDoor()  # per request: it carries the client's model to the answer
    if path.startswith(BEDROCK_PREFIX):
        return match_bedrock(path)
    if path.startswith(VERTEX_PREFIX):
        return match_vertex(path)
    return None
