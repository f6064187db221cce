"""Test helpers shipped with Sluice: faithful fake upstreams (Anthropic, Bedrock, Vertex,
OpenAI-compatible) with fault injection, all scripted with the same scenarios.

See `sluice.testing.fake_anthropic` for the Anthropic server, the other `fake_*` modules for
the rest, and `sluice.testing.scenarios` for the reply/fault data model.
"""

from sluice.testing.fake_anthropic import FakeAnthropic, RecordedRequest, serve_forever
from sluice.testing.fake_bedrock import FakeBedrock, bedrock_error
from sluice.testing.fake_openai import FakeOpenAI
from sluice.testing.fake_vertex import FakeVertex, vertex_error
from sluice.testing.scenarios import (
    SCENARIO_NAMES,
    FakeUsage,
    Fault,
    Reply,
    Scenario,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    scenario_by_name,
)
from sluice.testing.server_thread import ServerThread

__all__ = [
    "SCENARIO_NAMES",
    "FakeAnthropic",
    "FakeBedrock",
    "FakeOpenAI",
    "FakeUsage",
    "FakeVertex",
    "Fault",
    "RecordedRequest",
    "Reply",
    "Scenario",
    "ServerThread",
    "TextBlock",
    "ThinkingBlock",
    "ToolUseBlock",
    "bedrock_error",
    "scenario_by_name",
    "serve_forever",
    "vertex_error",
]
