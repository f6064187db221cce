"""The Vertex-shaped door (/vertex/v1): the official SDK's Vertex client, with the virtual key
as its access token, through every provider kind; the ledger names the door."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import anthropic
import orjson
import pytest

from sluice.config.vk import VirtualKeyConfig
from sluice.store.budgets_repo import Budget, BudgetsRepo
from sluice.testing import Reply, Scenario, TextBlock, ToolUseBlock
from sluice.testing.scenarios import FakeUsage

from lanes import KINDS, MODEL, Lane, lane
from support import Gateway, scrape, value

REPLY = Reply(
    [TextBlock("Listing files.", chunks=2), ToolUseBlock("Bash", {"command": "ls"})],
    usage=FakeUsage(input_tokens=40, output_tokens=12),
)


def _vertex(gateway: Gateway, token: str | None = None) -> anthropic.AsyncAnthropicVertex:
    return anthropic.AsyncAnthropicVertex(
        region="us-east5",
        project_id="any-project",
        access_token=token or gateway.key,
        base_url=f"{gateway.url}/vertex/v1",
        max_retries=0,
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_vertex_door_stream_and_create(kind: str, tmp_path: Path) -> None:
    async with lane(kind, tmp_path) as ln:
        ln.fake.set_default(Scenario(REPLY))  # type: ignore[attr-defined]
        async with _vertex(ln.gateway) as client:
            async with client.messages.stream(
                model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "ls?"}]
            ) as stream:
                streamed = await stream.get_final_message()
            created = await client.messages.create(
                model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "ls?"}]
            )
        for message in (streamed, created):
            assert [b.type for b in message.content] == ["text", "tool_use"]
            assert message.content[1].input == {"command": "ls"}  # type: ignore[union-attr]
            assert message.stop_reason == "tool_use"
        rows = await ln.gateway.ledger_rows()
        assert [(r["ingress"], r["status"], r["streaming"]) for r in rows] == [
            ("vertex", 200, True),
            ("vertex", 200, False),
        ]
        assert {r["model_requested"] for r in rows} == {MODEL}
        assert all(r["output_tokens"] == 12 for r in rows)
        _assert_sent_model(ln)


def _assert_sent_model(ln: Lane) -> None:
    """The upstream got the model of the path and never the Vertex body's version marker
    (except Vertex itself, which needs it)."""
    for request in ln.model_requests():
        body = orjson.loads(request.body)  # type: ignore[attr-defined]
        if ln.kind == "anthropic":
            assert body["model"] == MODEL
            assert "anthropic_version" not in body
        if ln.kind == "vertex":
            assert body["anthropic_version"] == "vertex-2023-10-16"


async def test_vertex_door_count_tokens(tmp_path: Path) -> None:
    async with lane("anthropic", tmp_path) as ln, _vertex(ln.gateway) as client:
        counted = await client.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "hello there"}]
        )
        assert counted.input_tokens > 0
        rows = await ln.gateway.ledger_rows()
        assert [(r["ingress"], r["endpoint"]) for r in rows] == [("vertex", "count_tokens")]


async def test_vertex_door_refusals_keep_the_sdk_errors(tmp_path: Path) -> None:
    async with lane("anthropic", tmp_path) as ln:
        async with _vertex(ln.gateway, token="sk-lw-not-a-key") as client:
            with pytest.raises(anthropic.AuthenticationError):
                await client.messages.create(
                    model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}]
                )
        async with _vertex(ln.gateway) as client:
            with pytest.raises(anthropic.NotFoundError):
                await client.messages.create(
                    model="gpt-nope", max_tokens=8, messages=[{"role": "user", "content": "x"}]
                )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/vertex/v1/projects/p/locations/r/publishers/anthropic/models/m:predict", 404),
        ("/vertex/v1/projects/p/publishers/anthropic/models/m:rawPredict", 404),
        ("/vertex/v1/projects/p/locations/r/publishers/anthropic/models/count-tokens:x", 404),
    ],
)
async def test_vertex_door_unknown_routes(path: str, status: int, tmp_path: Path) -> None:
    async with (
        lane("anthropic", tmp_path) as ln,
        aiohttp.ClientSession() as http,
        http.post(ln.gateway.url + path, data=b"{}") as response,
    ):
        assert response.status == status
        assert (await response.json())["type"] == "error"


async def test_vertex_door_hostile_bodies(tmp_path: Path) -> None:
    base = "/vertex/v1/projects/p/locations/r/publishers/anthropic/models/"
    async with lane("anthropic", tmp_path) as ln, aiohttp.ClientSession() as http:
        auth = {"authorization": f"Bearer {ln.gateway.key}"}
        cases = [
            (base + MODEL + ":rawPredict", b"[1,2]"),
            (base + MODEL + ":rawPredict", b'{"messages": [' * 5000),
            (base + "m" * 5000 + ":rawPredict", b'{"messages": []}'),
            (base + "count-tokens:rawPredict", b'{"messages": []}'),
            (base + "count-tokens:rawPredict", b'{"model": 7, "messages": []}'),
        ]
        for path, body in cases:
            async with http.post(ln.gateway.url + path, data=body, headers=auth) as response:
                assert response.status == 400, (path[:80], body[:40])
                error = (await response.json())["error"]
                assert error["type"] == "invalid_request_error"


async def test_every_door_is_counted_in_metrics_and_held_by_budgets(tmp_path: Path) -> None:
    """The same key by three doors: each counted under its ingress label; then a budget the
    key has used up refuses each door in that door's own error shape."""
    async with lane("anthropic", tmp_path) as ln, aiohttp.ClientSession() as http:
        ln.fake.set_default(Scenario(REPLY))  # type: ignore[attr-defined]
        auth = {"authorization": f"Bearer {ln.gateway.key}"}
        message = {"max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
        vertex = f"/vertex/v1/projects/p/locations/r/publishers/anthropic/models/{MODEL}"
        bedrock = "/bedrock/model/us.anthropic.claude-sonnet-4-6/invoke"
        doors = [
            (
                "vertex",
                vertex + ":rawPredict",
                {"anthropic_version": "vertex-2023-10-16", **message},
            ),
            ("bedrock", bedrock, {"anthropic_version": "bedrock-2023-05-31", **message}),
            ("openai", "/v1/chat/completions", {"model": MODEL, **message}),
        ]
        for _, path, body in doors:
            async with http.post(ln.gateway.url + path, json=body, headers=auth) as response:
                assert response.status == 200, await response.text()
        samples = await scrape(ln.gateway)
        for door, _, _ in doors:
            counted = value(
                samples, "sluice_requests_total", route="messages", status="200",
                provider="up", model=MODEL, ingress=door,
            )  # fmt: skip
            assert counted == 1, door
        # Alice's key has spent; a budget of one micro-dollar now refuses every door.
        engine = ln.gateway.server.app.services.engine
        await BudgetsRepo(engine).insert(
            Budget(
                id="D" * 26, created_at=0, updated_at=0, scope="principal", target="alice",
                window="month", limit_micros=1, on_breach="block", name="tiny",
            )
        )  # fmt: skip
        await ln.gateway.server.app.services.budgets.refresh()
        shapes = []
        for door, path, body in doors:
            async with http.post(ln.gateway.url + path, json=body, headers=auth) as response:
                assert response.status == 402, door
                payload = await response.json()
                shapes.append((door, sorted(payload)))
                if door == "bedrock":
                    assert response.headers["x-amzn-errortype"].startswith("AccessDenied")
        assert shapes == [
            ("vertex", ["error", "request_id", "type"]),
            ("bedrock", ["message"]),
            ("openai", ["error"]),
        ]
        rows = await ln.gateway.ledger_rows()
        refused = [(r["ingress"], r["error_code"]) for r in rows if r["status"] == 402]
        assert refused == [(d, "budget_exceeded") for d, _, _ in doors]


async def test_aliases_and_rate_limits_apply_on_every_door(tmp_path: Path) -> None:
    """A key's alias names a model on any door (the path's model for Vertex and Bedrock, the
    body's for OpenAI), and its rate limit counts requests of every door together."""
    async with lane("anthropic", tmp_path) as ln, aiohttp.ClientSession() as http:
        ln.fake.set_default(Scenario(REPLY))  # type: ignore[attr-defined]
        minted = await ln.gateway.mint(
            name="aliased",
            config=VirtualKeyConfig(
                providers_allowed=["up"],
                model_aliases={"team-fast": MODEL},
                rate_limits={"rpm": 3},  # type: ignore[arg-type]
            ),
        )
        auth = {"authorization": f"Bearer {minted.secret}"}
        message = {"max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
        vertex = "/vertex/v1/projects/p/locations/r/publishers/anthropic/models/team-fast"
        requests = [
            (vertex + ":rawPredict", {"anthropic_version": "vertex-2023-10-16", **message}),
            (
                "/bedrock/model/team-fast/invoke",
                {"anthropic_version": "bedrock-2023-05-31", **message},
            ),
            ("/v1/chat/completions", {"model": "team-fast", **message}),
            ("/v1/chat/completions", {"model": "team-fast", **message}),
        ]
        statuses = []
        for path, body in requests:
            async with http.post(ln.gateway.url + path, json=body, headers=auth) as response:
                statuses.append(response.status)
        assert statuses == [200, 200, 200, 429]  # one budget of 3 a minute across doors
        sent = [orjson.loads(r.body)["model"] for r in ln.model_requests()]  # type: ignore[attr-defined]
        assert sent == [MODEL, MODEL, MODEL]  # the alias resolved on every door
