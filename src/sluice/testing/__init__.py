"""Test helpers shipped with Sluice: a faithful fake Anthropic upstream with fault injection.

See `sluice.testing.fake_anthropic` for the server and `sluice.testing.scenarios` for the
reply/fault data model.
"""

from sluice.testing.fake_anthropic import FakeAnthropic, RecordedRequest, serve_forever
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
    "FakeUsage",
    "Fault",
    "RecordedRequest",
    "Reply",
    "Scenario",
    "ServerThread",
    "TextBlock",
    "ThinkingBlock",
    "ToolUseBlock",
    "scenario_by_name",
    "serve_forever",
]
