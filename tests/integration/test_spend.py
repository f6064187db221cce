"""`sluice spend` over ledger rows written by a real gateway."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import aiohttp

from sluice.testing import FakeAnthropic, FakeUsage, Reply, Scenario, TextBlock

from support import SECRET, Gateway


async def run_sluice(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "sluice"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_spend_by_principal_model_and_session(
    gateway: Gateway, fake: FakeAnthropic, tmp_path: Path
) -> None:
    fake.set_default(
        Scenario(
            Reply(
                [TextBlock("ok")],
                usage=FakeUsage(
                    input_tokens=10,
                    output_tokens=5,
                    cache_read_input_tokens=100,
                    cache_creation_5m=20,
                ),
            )
        )
    )
    bob = await gateway.mint(name="bob", principal="bob")
    async with aiohttp.ClientSession() as s:
        for key, model, session in [
            (gateway.key, "claude-opus-4-8", "s1"),
            (gateway.key, "claude-opus-4-8", "s1"),
            (bob.secret, "claude-haiku-4-5-20251001", "s2"),
        ]:
            body = json.dumps(
                {
                    "model": model,
                    "max_tokens": 5,
                    "stream": True,
                    "messages": [{"role": "user", "content": "x"}],
                }
            )
            async with s.post(
                f"{gateway.url}/v1/messages",
                data=body,
                headers={"x-api-key": key, "x-claude-code-session-id": session},
            ) as r:
                assert r.status == 200
                await r.read()
        # Claude Code's /context sends count_tokens calls: counted apart, not as requests.
        count = {"model": "claude-opus-4-8", "messages": [{"role": "user", "content": "x"}]}
        async with s.post(
            f"{gateway.url}/v1/messages/count_tokens",
            json=count,
            headers={"x-api-key": gateway.key, "x-claude-code-session-id": "s1"},
        ) as r:
            assert r.status == 200
    assert len(await gateway.ledger_rows()) == 4
    cfg = tmp_path / "spend.yaml"
    cfg.write_text(f"database: sqlite:///{gateway.db_path}\nsecret_key: {SECRET}\n")
    by_principal = json.loads(
        await run_sluice("spend", "--by", "principal", "--json", "--config", str(cfg))
    )
    assert by_principal == [
        {
            "principal": "alice",
            "requests": 2,
            "token_counts": 1,
            "input_tokens": 20,
            "output_tokens": 10,
            "cache_read_tokens": 200,
            "cache_creation_tokens": 40,
            # opus-4-8 per call: 10x$5 + 5x$25 + 100x$0.5 + 20x$6.25 per MTok = 350 micro-USD
            "cost_micros": 700,
            "unpriced_requests": 0,
        },
        {
            "principal": "bob",
            "requests": 1,
            "token_counts": 0,
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_tokens": 100,
            "cache_creation_tokens": 20,
            # haiku-4-5: 10x$1 + 5x$5 + 100x$0.1 + 20x$1.25 = 70 micro-USD
            "cost_micros": 70,
            "unpriced_requests": 0,
        },
    ]
    by_model = json.loads(
        await run_sluice("spend", "--by", "model", "--since", "1d", "--json", "--config", str(cfg))
    )
    assert {r["model"]: r["requests"] for r in by_model} == {
        "claude-haiku-4-5-20251001": 1,
        "claude-opus-4-8": 2,
    }
    by_session = json.loads(
        await run_sluice("spend", "--by", "session", "--json", "--config", str(cfg))
    )
    assert {r["session"]: r["requests"] for r in by_session} == {"s1": 2, "s2": 1}
    by_key = json.loads(await run_sluice("spend", "--by", "key", "--json", "--config", str(cfg)))
    assert {r["key"]: r["requests"] for r in by_key} == {gateway.minted.key.id: 2, bob.key.id: 1}
    table = await run_sluice("spend", "--by", "principal", "--config", str(cfg))
    assert "alice" in table and "bob" in table and "0.000700" in table
    this_month = json.loads(
        await run_sluice(
            "spend", "--by", "principal", "--window", "month", "--json", "--config", str(cfg)
        )
    )
    assert this_month == by_principal
    future = json.loads(
        await run_sluice(
            "spend", "--by", "key", "--since", "2999-01-01", "--json", "--config", str(cfg)
        )
    )
    assert future == []


async def test_ledger_keeps_claude_codes_hints_and_spend_groups_by_them(
    gateway: Gateway, tmp_path: Path
) -> None:
    """With CLAUDE_CODE_GATEWAY_HINT_HEADERS=1 each call says what it is (main, subagent,
    compaction, ...) and which agent made it: the ledger keeps both, so a team can see what
    compaction or subagents cost them. Over-long values are cut, never stored whole."""
    calls = [
        {"x-claude-code-request-class": "main"},
        {"x-claude-code-request-class": "main"},
        {
            "x-claude-code-request-class": "subagent",
            "x-claude-code-agent-id": "agent-7",
            "x-claude-code-parent-agent-id": "agent-1",
        },
        {"x-claude-code-request-class": "compaction" + "x" * 500},
        {},  # an older CLI, or hints off
    ]
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
    }
    async with aiohttp.ClientSession() as s:
        for hints in calls:
            headers = {"x-api-key": gateway.key, **hints}
            async with s.post(f"{gateway.url}/v1/messages", json=body, headers=headers) as r:
                assert r.status == 200
    rows = await gateway.ledger_rows()  # several may share a millisecond: compare as a bag
    assert Counter((r["request_class"], r["agent_id"], r["parent_agent_id"]) for r in rows) == {
        ("main", None, None): 2,
        ("subagent", "agent-7", "agent-1"): 1,
        ("compaction" + "x" * 22, None, None): 1,
        (None, None, None): 1,
    }
    cfg = tmp_path / "spend.yaml"
    cfg.write_text(f"database: sqlite:///{gateway.db_path}\nsecret_key: {SECRET}\n")
    by_class = json.loads(
        await run_sluice("spend", "--by", "request_class", "--json", "--config", str(cfg))
    )
    assert {r["request_class"]: r["requests"] for r in by_class} == {
        None: 1,
        "compaction" + "x" * 22: 1,
        "main": 2,
        "subagent": 1,
    }
    by_agent = json.loads(
        await run_sluice("spend", "--by", "agent", "--json", "--config", str(cfg))
    )
    assert {r["agent"]: r["requests"] for r in by_agent} == {None: 4, "agent-7": 1}


async def test_spend_by_door(gateway: Gateway, fake: FakeAnthropic, tmp_path: Path) -> None:
    """The same key through three doors: `spend --by ingress` sums each apart."""
    fake.set_default(Scenario(Reply([TextBlock("ok")], usage=FakeUsage(10, 5))))
    message = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    vertex = "/vertex/v1/projects/p/locations/r/publishers/anthropic/models/claude-opus-4-8"
    requests = [
        ("/v1/messages", {"model": "claude-opus-4-8", **message}),
        ("/v1/chat/completions", {"model": "claude-opus-4-8", **message}),
        ("/v1/chat/completions", {"model": "claude-opus-4-8", **message}),
        (vertex + ":rawPredict", {"anthropic_version": "vertex-2023-10-16", **message}),
    ]
    auth = {"authorization": f"Bearer {gateway.key}"}
    async with aiohttp.ClientSession() as s:
        for path, body in requests:
            async with s.post(gateway.url + path, json=body, headers=auth) as r:
                assert r.status == 200, await r.text()
    await gateway.ledger_rows()  # flushed
    cfg = tmp_path / "spend.yaml"
    cfg.write_text(f"database: sqlite:///{gateway.db_path}\nsecret_key: {SECRET}\n")
    by_door = json.loads(
        await run_sluice("spend", "--by", "ingress", "--json", "--config", str(cfg))
    )
    assert {r["ingress"]: r["requests"] for r in by_door} == {
        "anthropic": 1,
        "openai": 2,
        "vertex": 1,
    }
    assert {r["cost_micros"] for r in by_door if r["ingress"] != "openai"} == {175}
