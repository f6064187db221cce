"""A real agent CLI that speaks OpenAI Chat Completions, opencode, through Sluice's
/v1/chat/completions door to a key whose provider is Anthropic: a text turn, a bash tool loop
and a file written by its write tool. The gateway turns each Chat request into an Anthropic
Messages request (what the fake upstream records) and each streamed Message back into
chat.completion.chunk lines with tool_calls, finish_reason and usage (what opencode acts on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sluice.testing.scenarios import Reply, Scenario, TextBlock, ToolUseBlock

from lanes import ANTHROPIC_KEY, MODEL, Lane, lane
from opencode_cli import OpencodeResult, run_opencode

pytestmark = pytest.mark.e2e


async def _opencode(up: Lane, tmp_path: Path, prompt: str) -> OpencodeResult:
    return await run_opencode(
        prompt,
        base_url=f"{up.gateway.url}/v1",
        api_key=up.gateway.key,
        model=MODEL,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
    )


def _bodies(up: Lane) -> list[dict[str, Any]]:
    """What the Anthropic upstream received: Messages bodies, one per agent step."""
    requests = up.fake.messages_requests()  # type: ignore[attr-defined]
    for request in requests:
        assert request.header("x-api-key") == ANTHROPIC_KEY  # the provider's key...
        assert up.gateway.key not in str(request.headers)  # ...never the virtual key
    return [orjson.loads(r.body) for r in requests]


def _assert_messages_shape(body: dict[str, Any], prompt: str) -> None:
    """A Messages body as Anthropic defines it, not a Chat body passed through."""
    assert body["model"] == MODEL
    assert isinstance(body["max_tokens"], int) and body["stream"] is True
    assert {m["role"] for m in body["messages"]} <= {"user", "assistant"}  # system moved out
    assert body["system"], "opencode's system prompt should be Messages' top-level system"
    assert prompt in orjson.dumps(body["messages"][0]["content"]).decode()
    for tool in body["tools"]:
        assert set(tool) >= {"name", "input_schema"} and "function" not in tool
    assert not {"stream_options", "n", "functions", "parallel_tool_calls"} & set(body)
    assert isinstance(body.get("tool_choice", {}), dict)


async def _rows(up: Lane) -> list[dict[str, Any]]:
    return [r for r in await up.gateway.ledger_rows() if r["endpoint"] == "messages"]


async def test_text_turn_through_the_openai_door(tmp_path: Path) -> None:
    text = "Hello through the OpenAI door: periwinkle-4711"
    prompt = "say hi"
    async with lane("anthropic", tmp_path) as up:
        up.fake.script(Scenario(Reply([TextBlock(text, chunks=4)])))
        result = await _opencode(up, tmp_path, prompt)
        bodies = _bodies(up)
        rows = await _rows(up)
    assert result.rc == 0, result.describe()
    assert result.text == text, result.describe()
    [body] = bodies
    _assert_messages_shape(body, prompt)
    # opencode's message-level cache breakpoints reach Anthropic (prompt caching works).
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    [row] = rows
    assert (row["ingress"], row["provider"], row["status"]) == ("openai", "up", 200)
    assert (row["model_requested"], row["streaming"], row["stop_reason"]) == (
        MODEL,
        True,
        "end_turn",
    )
    # The usage the door put on the last chunk is what opencode counted.
    [finish] = result.parts("step_finish")
    assert finish["reason"] == "stop"
    assert finish["tokens"]["output"] == row["output_tokens"] == 12
    assert finish["tokens"]["input"] == row["input_tokens"]


async def test_bash_tool_loop_through_the_openai_door(tmp_path: Path) -> None:
    marker = tmp_path / "work" / "sluice-openai-door-marker"
    command = f"touch {marker}"
    done = "The marker file now exists."
    prompt = "create the marker file"
    async with lane("anthropic", tmp_path) as up:
        up.fake.script(
            Scenario(
                Reply(
                    [
                        TextBlock("I'll create it."),
                        ToolUseBlock(
                            "bash",
                            {"command": command, "description": "Create the marker file"},
                            id="toolu_door_bash_1",
                            fragment_size=5,
                        ),
                    ]
                )
            ),
            Scenario(Reply([TextBlock(done)])),
        )
        result = await _opencode(up, tmp_path, prompt)
        bodies = _bodies(up)
        rows = await _rows(up)
    assert result.rc == 0, result.describe()
    assert marker.exists(), f"opencode did not run the bash tool\n{result.describe()}"
    assert done in result.text
    [tool] = result.parts("tool_use")
    assert (tool["tool"], tool["callID"]) == ("bash", "toolu_door_bash_1")
    assert tool["state"]["status"] == "completed"
    assert tool["state"]["input"]["command"] == command
    assert [p["reason"] for p in result.parts("step_finish")] == ["tool-calls", "stop"]
    assert [(r["ingress"], r["status"], r["stop_reason"]) for r in rows] == [
        ("openai", 200, "tool_use"),
        ("openai", 200, "end_turn"),
    ]
    first, second = bodies
    _assert_messages_shape(first, prompt)
    assert "bash" in {t["name"] for t in first["tools"]}
    _assert_messages_shape(second, prompt)
    # The agent's tool_calls turn and its tool message came back as Messages blocks.
    assistant, results = second["messages"][-2:]
    assert assistant["role"] == "assistant"
    [call] = [b for b in assistant["content"] if b["type"] == "tool_use"]
    assert (call["id"], call["name"], call["input"]["command"]) == (
        "toolu_door_bash_1",
        "bash",
        command,
    )
    assert results["role"] == "user"
    [tool_result] = [b for b in results["content"] if b["type"] == "tool_result"]
    assert tool_result["tool_use_id"] == "toolu_door_bash_1"


async def test_write_tool_creates_a_file_through_the_openai_door(tmp_path: Path) -> None:
    target = tmp_path / "work" / "notes" / "hello.py"
    content = 'def greet(name: str) -> str:\n    return f"Hello, {name}! \\u2603 ☃"\n'
    done = "Wrote hello.py."
    async with lane("anthropic", tmp_path) as up:
        up.fake.script(
            Scenario(
                Reply(
                    [
                        ToolUseBlock(
                            "write",
                            {"filePath": str(target), "content": content},
                            fragment_size=3,  # many small argument deltas to reassemble
                        )
                    ]
                )
            ),
            Scenario(Reply([TextBlock(done)])),
        )
        result = await _opencode(up, tmp_path, "write notes/hello.py")
        rows = await _rows(up)
    assert result.rc == 0, result.describe()
    assert target.read_text() == content, result.describe()
    assert done in result.text
    [tool] = result.parts("tool_use")
    assert (tool["tool"], tool["state"]["status"]) == ("write", "completed")
    assert [(r["ingress"], r["status"], r["stop_reason"]) for r in rows] == [
        ("openai", 200, "tool_use"),
        ("openai", 200, "end_turn"),
    ]


async def test_unknown_key_is_refused_in_openai_shape(tmp_path: Path) -> None:
    """A key the gateway does not know: opencode shows the door's OpenAI-shaped 401 message
    and exits non-zero; nothing reaches the upstream."""
    async with lane("anthropic", tmp_path) as up:
        up.fake.script(Scenario(Reply([TextBlock("never sent")])))
        result = await run_opencode(
            "say hi",
            base_url=f"{up.gateway.url}/v1",
            api_key="lw_vk_live_not-a-key-the-gateway-minted",
            model=MODEL,
            cwd=tmp_path / "work",
            home=tmp_path / "home",
        )
        bodies = _bodies(up)
    assert result.rc != 0, result.describe()
    errors = [e for e in result.events if e.get("type") == "error"]
    assert "this virtual key is not known to the gateway" in orjson.dumps(errors).decode(), (
        result.describe()
    )
    assert "never sent" not in result.text
    assert bodies == []
