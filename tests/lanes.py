"""One running gateway per provider kind, each in front of that kind's fake upstream.

The key minted for a lane may use only the provider under test (``up``), so every request
goes through it; ``anthropic-primary`` from support.make_config exists but is never chosen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sluice.config.vk import VirtualKeyConfig
from sluice.testing.fake_anthropic import FakeAnthropic
from sluice.testing.fake_bedrock import FakeBedrock
from sluice.testing.fake_openai import FakeOpenAI
from sluice.testing.fake_server import FakeServer
from sluice.testing.fake_vertex import FakeVertex

from support import Gateway, start_gateway

KINDS = ("anthropic", "bedrock", "vertex", "openai")
MODEL = "claude-sonnet-4-6"
AWS_KEY_ID = "AKIDEXAMPLE0123456789"
AWS_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
VERTEX_TOKEN = "ya29.vertex-test-token-0123456789"
OPENAI_KEY = "sk-openai-test-key-0123456789"
ANTHROPIC_KEY = "sk-ant-lane-key-0123456789"


@dataclass
class Lane:
    kind: str
    fake: FakeServer
    gateway: Gateway

    def model_requests(self) -> list[object]:
        return list(self.fake.messages_requests())  # type: ignore[attr-defined]


def provider_yaml(kind: str, fake: FakeServer, extra: str = "") -> str:
    """The ``up`` provider's YAML (2-space entry, 4-space fields); ``extra``: more fields."""
    if kind == "anthropic":
        body = f'type: anthropic\napi_key: {ANTHROPIC_KEY}\nbase_url: "{fake.url}"\n'
        body += f"models: [{MODEL}, claude-opus-4-8]\n"
    elif kind == "bedrock":
        body = (
            f"type: bedrock\nregion: us-east-1\naccess_key_id: {AWS_KEY_ID}\n"
            f'secret_access_key: {AWS_SECRET}\nbase_url: "{fake.url}"\n'
            "model_map: {claude-opus-4-8: us.anthropic.claude-opus-4-8-v1}\n"
        )
    elif kind == "vertex":
        assert isinstance(fake, FakeVertex)
        body = (
            f"type: vertex\nproject: {fake.project}\nregion: us-east5\n"
            f'access_token: {VERTEX_TOKEN}\nbase_url: "{fake.base_url}"\n'
            f"models: [{MODEL}, claude-opus-4-8]\n"
        )
    else:
        assert isinstance(fake, FakeOpenAI)
        body = (
            f'type: openai\nbase_url: "{fake.base_url}"\napi_key: {OPENAI_KEY}\n'
            f"model_map: {{{MODEL}: gpt-4.1, claude-opus-4-8: gpt-4.1}}\n"
        )
    lines = (body + extra).splitlines()
    return "  up:\n" + "".join(f"    {line}\n" for line in lines)


def make_fake(kind: str) -> FakeServer:
    if kind == "anthropic":
        return FakeAnthropic()
    if kind == "bedrock":
        return FakeBedrock()
    if kind == "vertex":
        return FakeVertex(token=VERTEX_TOKEN)
    return FakeOpenAI(api_key=OPENAI_KEY)


@asynccontextmanager
async def lane(
    kind: str, tmp_path: Path, extra_provider_yaml: str = "", fake: FakeServer | None = None
) -> AsyncIterator[Lane]:
    server = fake if fake is not None else make_fake(kind)
    async with server:
        gateway = await start_gateway(
            tmp_path / "sluice.db",
            server.url,
            provider_yaml=provider_yaml(kind, server, extra_provider_yaml),
            key_config=VirtualKeyConfig(providers_allowed=["up"]),
        )
        try:
            yield Lane(kind, server, gateway)
        finally:
            await gateway.server.stop()
