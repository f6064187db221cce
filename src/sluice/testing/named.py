"""Named scenarios: what `sluice mock anthropic --scenario NAME` serves, and test shorthands.

Every tool scenario answers a request that carries the tool's result with text, so a real
client's agent loop (Claude Code runs the tool and asks again) ends.
"""

from __future__ import annotations

from sluice.testing.scenarios import (
    Block,
    FakeUsage,
    Fault,
    Reply,
    Scenario,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)

# Name -> one line for `sluice mock anthropic --help`, in the order it lists them.
SCENARIO_HELP: dict[str, str] = {
    "text": "a short text reply",
    "tool_bash": "text, then a Bash call; the tool result is answered with text",
    "tool_read": "a Read call; the tool result is answered with text",
    "tool_loop": "three Bash calls in a row (one per request), then text",
    "tool_denied": "a Bash call as the first block: try it with policy_rules.tools.deny",
    "thinking": "a short thinking block, then text",
    "thinking_long": "a long thinking block streamed slowly, then text",
    "cache": "text with prompt-cache read and write usage",
    "err400": "HTTP 400 invalid_request_error",
    "err401": "HTTP 401 authentication_error",
    "err403": "HTTP 403 permission_error",
    "err429": "HTTP 429 rate_limit_error with retry-after: 2",
    "err500": "HTTP 500 api_error",
    "err529": "HTTP 529 overloaded_error, always",
    "err529_then_ok": "529 on the first try of each request, success when it is retried",
    "html502": "an nginx-style HTML 502 page",
    "sse_error": "a stream that ends in an `event: error` after three events",
    "drop": "a stream cut mid-way (TCP drop); non-streaming requests succeed",
    "hang": "a stream that goes silent after its first event",
    "slow": "a 0.5 s first byte, then 50 ms between events",
}
SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIO_HELP)

DONE_TEXT = "Done: the tool ran and its output came back."
_STATUS_SCENARIOS = {"err400": 400, "err401": 401, "err403": 403, "err500": 500, "err529": 529}
_LONG_THOUGHT = " ".join(
    f"Step {i}: weigh what the user asked against what the files say, and note it."
    for i in range(1, 41)
)


def _tools(blocks: list[Block], rounds: int = 1) -> Scenario:
    done = Reply(blocks=[TextBlock(DONE_TEXT)])
    return Scenario(Reply(blocks=blocks), after_tools=done, tool_rounds=rounds)


def _tool_scenario(name: str, bash_command: str) -> Scenario | None:
    bash = ToolUseBlock("Bash", {"command": bash_command, "description": "Run a command"})
    match name:
        case "tool_bash":
            return _tools([TextBlock("I'll run that command."), bash])
        case "tool_read":
            return _tools([ToolUseBlock("Read", {"file_path": "/etc/hostname"})])
        case "tool_loop":
            return _tools([TextBlock("Next step."), bash], rounds=3)
        case "tool_denied":
            return _tools([bash])
    return None


def scenario_by_name(name: str, *, bash_command: str = "echo SLUICE_TOOL_MARKER") -> Scenario:
    """A named scenario; raises ValueError for an unknown name."""
    if name in _STATUS_SCENARIOS:
        return Scenario(fault=Fault(status=_STATUS_SCENARIOS[name]))
    if (tool := _tool_scenario(name, bash_command)) is not None:
        return tool
    match name:
        case "text":
            return Scenario()
        case "thinking":
            blocks: list[Block] = [
                ThinkingBlock("The user wants a greeting. A short one will do."),
                TextBlock("Hello! How can I help?"),
            ]
            return Scenario(Reply(blocks=blocks))
        case "thinking_long":
            blocks = [ThinkingBlock(_LONG_THOUGHT, chunks=40), TextBlock("Hello! I thought hard.")]
            return Scenario(Reply(blocks=blocks), fault=Fault(event_delay=0.05))
        case "cache":
            usage = FakeUsage(
                cache_read_input_tokens=2048, cache_creation_5m=512, cache_creation_1h=256
            )
            return Scenario(Reply(usage=usage))
        case "err429":
            return Scenario(fault=Fault(status=429, retry_after="2"))
        case "err529_then_ok":
            return Scenario(first_attempt_fault=Fault(status=529))
        case "html502":
            return Scenario(fault=Fault.html(502))
        case "sse_error":
            return Scenario(fault=Fault(error_after_events=3))
        case "drop":
            return Scenario(fault=Fault(drop_after_events=3))
        case "hang":
            return Scenario(fault=Fault(hang_after_events=1))
        case "slow":
            return Scenario(fault=Fault(first_byte_delay=0.5, event_delay=0.05))
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_NAMES)}")
