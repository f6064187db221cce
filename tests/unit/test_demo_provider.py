"""The in-process demo upstream answers exactly as the fake Anthropic server it replaced."""

from __future__ import annotations

import aiohttp
import orjson

from sluice.providers.base import UpstreamRequest
from sluice.providers.demo import DEMO_MODELS, DEMO_TEXT, DemoProvider
from sluice.testing.fake_anthropic import FakeAnthropic
from sluice.testing.scenarios import Reply, Scenario, TextBlock

MODEL = "claude-opus-4-8"


def _request(body: dict[str, object], endpoint: str = "messages") -> UpstreamRequest:
    path = "/v1/messages" if endpoint == "messages" else "/v1/messages/count_tokens"
    return UpstreamRequest(
        endpoint=endpoint,
        path=path,
        query="",
        headers=[(b"content-type", b"application/json")],
        body=orjson.dumps(body),
        model=str(body.get("model")),
        stream=body.get("stream") is True,
    )


async def _fake_answers(bodies: list[tuple[str, bytes]]) -> list[tuple[int, str, bytes]]:
    """What the fake that served the demo before answered to the same requests."""
    scenario = Scenario(Reply([TextBlock(DEMO_TEXT, chunks=6)]))
    out = []
    async with FakeAnthropic(scenario, max_recorded=100) as fake, aiohttp.ClientSession() as s:
        for path, body in bodies:
            async with s.post(fake.url + path, data=body) as resp:
                out.append((resp.status, resp.headers["content-type"], await resp.read()))
    return out


async def test_the_demo_answers_byte_for_byte_as_the_fake_did() -> None:
    requests = [
        _request({"model": MODEL, "max_tokens": 8, "stream": True, "messages": []}),
        _request({"model": MODEL, "max_tokens": 8, "messages": []}),
        _request({"model": MODEL, "messages": []}, "count_tokens"),
    ]
    demo = DemoProvider()
    answers = []
    for request in requests:
        upstream = await demo.send(request)
        answers.append((upstream.status, upstream.content_type, await upstream.read_all()))
    assert answers == await _fake_answers([(r.path, r.body) for r in requests])
    stream = answers[0][2].decode()
    assert stream.startswith("event: message_start") and "event: message_stop" in stream
    text = "".join(
        orjson.loads(line[6:])["delta"]["text"]
        for line in stream.splitlines()
        if line.startswith("data: ") and '"text_delta"' in line
    )
    assert text == DEMO_TEXT
    message = orjson.loads(answers[1][2])
    assert message["usage"]["output_tokens"] == 12 and message["id"] == "msg_fake_2"


async def test_the_demo_streams_event_by_event_and_lists_its_models() -> None:
    demo = DemoProvider()
    upstream = await demo.send(_request({"model": MODEL, "stream": True, "messages": []}))
    assert upstream.is_sse and upstream.upstream_request_id == "req_fake_1"
    assert (b"cache-control", b"no-cache") in upstream.headers
    chunks = [chunk async for chunk in upstream.body]
    assert len(chunks) > 5 and all(c.startswith(b"event: ") for c in chunks)
    assert [m.id for m in await demo.list_models()] == list(DEMO_MODELS)
    assert demo.kind == "anthropic" and demo.can_count_tokens(MODEL)
    assert demo.model_id_for(MODEL) == MODEL and demo.model_id_for("gpt-4.1") is None
