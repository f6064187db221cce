"""The admin API's Messages view: real Claude Code turns through a gateway whose tracing is
left at its defaults (no OTLP endpoint: the local store only), read back as turns and trees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sluice.admin.console import turns_view
from sluice.testing import FakeAnthropic, FakeUsage, Reply, Scenario, TextBlock
from sluice.testing.scenarios import ToolUseBlock

from admin_support import BODY, Plane, admin_plane
from support import fixture_request

SESSION = "7c04dda7-18fb-47f7-8946-fcc37dbc4279"  # the captured tool loop's session
TOOL_ID = "toolu_mock_4c9d3a5da2be40e3"
SKIP = {"authorization", "host", "content-length", "connection", "accept-encoding"}


@pytest.fixture
async def plane(fake: FakeAnthropic, tmp_path: Path) -> AsyncIterator[Plane]:
    # Only the flush interval is set: tracing itself is on by default, with no exporter.
    async with admin_plane("sqlite", tmp_path, fake.url, "tracing: {flush_interval_ms: 20}") as p:
        yield p


async def _send(plane: Plane, fixture: str, key: str) -> None:
    sent, body = fixture_request(fixture)
    headers = {k: v for k, v in sent if k.lower() not in SKIP}
    headers["Authorization"] = f"Bearer {key}"
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{plane.gateway.url}/v1/messages?beta=true", data=body, headers=headers) as r,
    ):
        assert r.status == 200, await r.text()
        await r.read()


async def _traffic(plane: Plane, fake: FakeAnthropic) -> dict[str, dict[str, Any]]:
    """A tool-loop turn with a key of project web (alice), a one-shot turn with ops (bob)."""
    keys = {}
    for project, principal in (("web", "alice"), ("ops", "bob")):
        body = {"name": f"{principal}-key", "project": project, "principal": principal}
        keys[project] = (await plane.call("POST", "/keys", json=body))[1]
    tool = ToolUseBlock("Bash", {"command": "echo hi", "description": "say hi"}, id=TOOL_ID)
    fake.script(
        Scenario(
            Reply(
                blocks=[TextBlock("I'll run it."), tool],
                usage=FakeUsage(40, 30, cache_read_input_tokens=1000, cache_creation_5m=200),
            )
        ),
        Scenario(
            Reply(blocks=[TextBlock("Done.")], usage=FakeUsage(15, 8, cache_read_input_tokens=5))
        ),
    )
    await _send(plane, "10-tool-loop-turn1.json", keys["web"]["key"])
    await _send(plane, "11-tool-loop-turn2-tool_result.json", keys["web"]["key"])
    assert (await plane.infer(keys["ops"]["key"], BODY))[0] == 200
    assert await plane.gateway.app.services.telemetry.flush()
    return keys


async def test_turns_list_filters_and_pages(plane: Plane, fake: FakeAnthropic) -> None:
    keys = await _traffic(plane, fake)
    status, body, _ = await plane.call("GET", "/turns")
    assert status == 200 and len(body["data"]) == 2 and body["next_cursor"] is None
    ops_turn, web_turn = body["data"]  # newest first
    assert web_turn["agent"] == "claude-code" and web_turn["session"] == SESSION
    assert (web_turn["principal"], web_turn["key"]) == ("alice", keys["web"]["id"])
    assert web_turn["project"] == "web" and web_turn["models"] == ["claude-opus-4-8"]
    assert web_turn["tools_called"] == ["Bash"] and web_turn["model_calls"] == 2
    assert web_turn["tokens"] == {
        "input": 40 + 1000 + 200 + 15 + 5,  # input tokens include cache reads and writes
        "output": 38,
        "cache_read": 1005,
        "cache_write": 200,
    }
    assert web_turn["cost_usd"] > 0 and web_turn["outcome"] == "ok"
    assert web_turn["duration_ms"] >= 0 and web_turn["stop_reason"] == "end_turn"
    assert ops_turn["principal"] == "bob" and ops_turn["tools_called"] == []

    async def ids(query: str, token: str = "admin") -> list[str]:
        status, found, _ = await plane.call("GET", f"/turns?{query}", token=token)
        assert status == 200, found
        return [t["trace_id"] for t in found["data"]]

    assert await ids("project=web") == [web_turn["trace_id"]]
    assert await ids("principal=bob") == [ops_turn["trace_id"]]
    assert await ids(f"session={SESSION}") == [web_turn["trace_id"]]
    assert await ids("agent=claude-code") == [web_turn["trace_id"]]
    assert await ids("agent=nobody") == []
    assert await ids(f"key={keys['ops']['id']}", token="viewer") == [ops_turn["trace_id"]]
    first = (await plane.call("GET", "/turns?limit=1"))[1]
    assert [t["trace_id"] for t in first["data"]] == [ops_turn["trace_id"]]
    assert await ids(f"limit=1&cursor={first['next_cursor']}") == [web_turn["trace_id"]]
    assert (await plane.call("GET", "/turns?cursor=garbage"))[0] == 400
    # A project token sees its own project's turns only, whatever it asks for.
    assert await ids("", token="web") == [web_turn["trace_id"]]
    assert await ids("project=ops", token="web") == []
    assert (await plane.call("GET", "/turns", token=None))[0] == 401


async def test_turn_tree(plane: Plane, fake: FakeAnthropic) -> None:
    await _traffic(plane, fake)
    listed = (await plane.call("GET", "/turns?project=web"))[1]["data"]
    trace = listed[0]["trace_id"]
    status, turn, _ = await plane.call("GET", f"/turns/{trace}")
    assert status == 200 and turn["trace_id"] == trace and turn["tools_called"] == ["Bash"]
    [root] = turn["spans"]
    assert (root["operation"], root["target"]) == ("invoke_agent", "claude-code")
    chats = root["children"]
    assert [c["operation"] for c in chats] == ["chat", "chat"]
    assert chats[0]["target"] == "claude-opus-4-8" and chats[0]["request_id"]
    assert chats[0]["tokens"] == {
        "input": 1240,
        "output": 30,
        "cache_read": 1000,
        "cache_write": 200,
    }
    assert chats[0]["cost_usd"] > 0 and chats[0]["duration_ms"] >= 0
    [tool] = chats[0]["children"]
    assert (tool["operation"], tool["target"]) == ("execute_tool", "Bash")
    assert tool["attributes"]["gen_ai.tool.call.id"] == TOOL_ID
    assert tool["children"] == [] and chats[1]["children"] == []
    # Other projects' turns do not exist for a project token; unknown ids are 404 too.
    assert (await plane.call("GET", f"/turns/{trace}", token="web"))[0] == 200
    assert (await plane.call("GET", f"/turns/{trace}", token="ops"))[0] == 404
    assert (await plane.call("GET", f"/turns/{'0' * 32}"))[0] == 404


async def test_the_console_groups_the_same_turns_by_agent_and_session(
    plane: Plane, fake: FakeAnthropic
) -> None:
    """The Messages page reads the turns API's rows: same turns, scoped to the project."""
    await _traffic(plane, fake)
    engine = plane.gateway.app.services.engine
    web = await turns_view.turns(engine, "web")
    assert [t["trace_id"] for t in web] == [
        t["trace_id"] for t in (await plane.call("GET", "/turns?project=web"))[1]["data"]
    ]
    [(agent, [(session, turns)])] = turns_view.grouped(web)
    assert (agent, session) == ("claude-code", SESSION) and turns[0]["tools_called"] == ["Bash"]
    assert turns[0]["duration_ms"] >= 0
    assert len(await turns_view.turns(engine, None)) == 2
