"""Fuzz every documented route of a real gateway (issue #11 item 5).

Hypothesis sends thousands of generated requests (Messages bodies and their mutations,
garbage bytes, deep nesting, long strings, repeated members, odd headers and methods) to an
in-process gateway in front of a fake upstream that never answers 5xx. The gateway must
answer every one with a status under 500, in Anthropic's error shape when it refuses, and log
no traceback. The gateway runs on a loop of its own in a thread, so the tests stay sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.config.vk import VirtualKeyConfig
from sluice.testing import FakeAnthropic

from support import Gateway, start_gateway

T = TypeVar("T")
MODELS = ["claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5-20251001"]
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class _Tracebacks(logging.Handler):
    """Keeps every record logged with an exception or at ERROR and above."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@dataclass
class Harness:
    loop: asyncio.AbstractEventLoop
    gateway: Gateway
    fake: FakeAnthropic
    policy_key: str
    session: aiohttp.ClientSession
    logs: _Tracebacks
    seen: list[int] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=60)

    async def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        async with self.session.request(
            method, self.gateway.url + path, data=body, headers=headers
        ) as r:
            return r.status, await r.read()

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        shape: str = "anthropic",
    ) -> tuple[int, bytes]:
        status, raw = self.run(self._request(method, path, body, headers))
        self.seen.append(status)
        assert status < 500, (status, method, path, body[:300] if body else body, raw[:500])
        if status >= 400 and method != "HEAD":
            payload = json.loads(raw)
            if shape == "bedrock":  # Bedrock's shape: the type is in x-amzn-errortype
                assert set(payload) == {"message"} and payload["message"], raw[:500]
            elif shape == "openai":
                assert payload["error"]["type"] and payload["error"]["message"], raw[:500]
            else:
                assert payload["type"] == "error" and payload["error"]["type"], raw[:500]
        return status, raw


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    logs = _Tracebacks()
    watched = [logging.getLogger(n) for n in ("", "sluice", "uvicorn", "uvicorn.error")]
    for logger in watched:
        logger.addHandler(logs)

    async def setup() -> Harness:
        fake = FakeAnthropic()
        await fake.start()
        db = tmp_path_factory.mktemp("fuzz") / "sluice.db"
        gw = await start_gateway(db, fake.url)
        strict = VirtualKeyConfig.parse(
            {
                "policy_rules": {
                    "tools": {"deny": ["^Bash$"], "mode": "strip"},
                    "mcp": {"deny": ["^github$"]},
                    "urls": {"deny": ["evil\\.example"]},
                    "models": {"deny": ["(a+)+$"]},
                },
                "cache": {"mode": "disable"},
                "model_aliases": {"fast": "claude-haiku-4-5-20251001"},
            }
        )
        minted = await gw.mint(config=strict)
        # A connection per request: on a kept-alive one, each answer here waited ~40 ms
        # (Nagle and delayed ACK: the gateway's accepted sockets have no TCP_NODELAY).
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        return Harness(loop, gw, fake, minted.secret, session, logs)

    h = asyncio.run_coroutine_threadsafe(setup(), loop).result(timeout=60)
    try:
        yield h
    finally:

        async def teardown() -> None:
            await h.session.close()
            await h.gateway.server.stop()
            await h.fake.stop()

        asyncio.run_coroutine_threadsafe(teardown(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        for logger in watched:
            logger.removeHandler(logs)
    shown = [f"{r.name}: {r.getMessage()} {r.exc_info!r}" for r in logs.records]
    assert not shown, shown


# --- strategies ---------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
urls = st.sampled_from(["https://evil.example/x", "https://ok.example/y", "http://" + "h" * 3000])
texts = st.text(max_size=80) | urls | st.builds(lambda n: "é" * n, st.integers(0, 5_000))
blocks = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
    st.fixed_dictionaries(
        {"type": st.just("text"), "text": texts, "cache_control": st.just({"type": "ephemeral"})}
    ),
    st.fixed_dictionaries(
        {"type": st.just("tool_result"), "tool_use_id": st.text(max_size=20), "content": texts}
    ),
    st.fixed_dictionaries({"type": st.just("image"), "source": values}),
    values,
)
messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant"]) | values,
        "content": texts | st.lists(blocks, max_size=3) | values,
    }
)
tool_names = st.sampled_from(["Bash", "Read", "mcp__github__create_issue"]) | st.text(max_size=300)
tools = st.fixed_dictionaries(
    {"name": tool_names, "input_schema": values},
    optional={"description": texts, "cache_control": values},
)
servers = st.fixed_dictionaries(
    {"type": st.just("url"), "name": st.sampled_from(["github", "docs"]) | values, "url": urls}
)
models = (
    st.sampled_from([*MODELS, "fast", "nope", "", "a" * 26 + "!"])
    | st.text(max_size=300)
    | st.builds(lambda n: "m" * n, st.integers(250, 100_000))
    | values
)
bodies = st.fixed_dictionaries(
    {"model": models, "messages": st.lists(messages, max_size=3) | values},
    optional={
        "max_tokens": st.integers(-5, 2**40) | values,
        "stream": st.booleans() | values,
        "metadata": st.fixed_dictionaries({"user_id": st.text(max_size=100) | values}) | values,
        "tools": st.lists(tools, max_size=3) | values,
        "mcp_servers": st.lists(servers, max_size=2) | values,
        "system": texts | st.lists(blocks, max_size=2),
        "tool_choice": values,
        "cache_control": values,
        "extra": values,
    },
)


@st.composite
def encoded(draw: st.DrawFn) -> bytes:
    """A body, encoded compact or pretty, perhaps with a repeated member or cut short."""
    body = draw(bodies)
    raw = json.dumps(body, indent=draw(st.sampled_from([None, 1])), ensure_ascii=False)
    style = draw(st.sampled_from(["as-is", "as-is", "repeat", "cut", "flip"]))
    if style == "repeat":
        key = draw(st.sampled_from(["model", "mcp_servers", "tools", "stream", "messages"]))
        value = json.dumps(draw(values) if draw(st.booleans()) else body.get(key))
        raw = "{" + json.dumps(key) + ":" + value + "," + raw.lstrip()[1:]
    data = raw.encode("utf-8", "surrogatepass")
    if style == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    if style == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 4_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    nest = opener * depth + "1" + closer * depth
    where = draw(st.sampled_from(["messages", "content", "metadata", "tools", "extra"]))
    model = draw(st.sampled_from(MODELS))
    if where == "messages":
        return f'{{"model":"{model}","max_tokens":8,"messages":[{nest}]}}'.encode()
    if where == "content":
        msg = f'{{"role":"user","content":[{{"type":"text","text":"x","z":{nest}}}]}}'
        return f'{{"model":"{model}","max_tokens":8,"messages":[{msg}]}}'.encode()
    msg = '{"role":"user","content":"hi"}'
    return f'{{"model":"{model}","max_tokens":8,"messages":[{msg}],"{where}":{nest}}}'.encode()


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
content_types = (
    st.sampled_from(
        ["application/json", "text/plain", "application/json; charset=latin-1", "", "*/*"]
    )
    | header_text
)


@st.composite
def headers(draw: st.DrawFn, h: Harness) -> dict[str, str]:
    key = draw(st.sampled_from([h.gateway.key, h.policy_key]))
    auth = draw(st.sampled_from(["x-api-key", "bearer", "none", "garbage", "long", "suffix"]))
    out: dict[str, str] = {}
    if auth == "x-api-key":
        out["x-api-key"] = key
    elif auth == "bearer":
        out["authorization"] = f"Bearer {key}"
    elif auth == "garbage":
        out[draw(st.sampled_from(["x-api-key", "authorization"]))] = draw(header_text)
    elif auth == "long":
        out["x-api-key"] = "sk-" + "x" * draw(st.integers(100, 6_000))
    elif auth == "suffix":
        out["x-api-key"] = key + draw(header_text)
    if draw(st.booleans()):
        out["content-type"] = draw(content_types)
    for name in ("anthropic-version", "anthropic-beta", "x-claude-code-session-id"):
        if draw(st.booleans()):
            out[name] = draw(header_text | st.builds(lambda n: "s" * n, st.integers(0, 4000)))
    return out


# --- the fuzz tests -----------------------------------------------------------------------

PROXY_PATHS = ["/v1/messages", "/v1/messages/count_tokens"]


@settings(FUZZ, max_examples=750)
@given(data=st.data())
def test_fuzz_messages_bodies(harness: Harness, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(PROXY_PATHS))
    key = data.draw(st.sampled_from([harness.gateway.key, harness.policy_key]))
    harness.send("POST", path, data.draw(encoded()), {"x-api-key": key})


@settings(FUZZ, max_examples=450)
@given(data=st.data())
def test_fuzz_garbage_and_deep_bodies(harness: Harness, data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=3_000) | nested() | st.text(max_size=200).map(str.encode))
    path = data.draw(st.sampled_from(PROXY_PATHS))
    key = data.draw(st.sampled_from([harness.gateway.key, harness.policy_key]))
    harness.send("POST", path, body, {"x-api-key": key})


@settings(FUZZ, max_examples=450)
@given(data=st.data())
def test_fuzz_headers(harness: Harness, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from([*PROXY_PATHS, "/v1/models"]))
    body = (
        json.dumps(
            {"model": data.draw(st.sampled_from(MODELS)), "max_tokens": 8, "messages": []}
        ).encode()
        if data.draw(st.booleans())
        else data.draw(encoded())
    )
    method = "GET" if path == "/v1/models" else "POST"
    harness.send(method, path, body if method == "POST" else None, data.draw(headers(harness)))


VERTEX = "/vertex/v1/projects/p/locations/r/publishers/anthropic/models/"
DOORS = [
    ("/v1/chat/completions", "openai"),
    ("/bedrock/model/us.anthropic.claude-sonnet-4-6/invoke", "bedrock"),
    ("/bedrock/model/us.anthropic.claude-sonnet-4-6/invoke-with-response-stream", "bedrock"),
    ("/bedrock/model/anthropic.x-v1:0/count-tokens", "bedrock"),
    (VERTEX + "claude-opus-4-8:streamRawPredict", "anthropic"),
    (VERTEX + "claude-opus-4-8:rawPredict", "anthropic"),
    (VERTEX + "count-tokens:rawPredict", "anthropic"),
]
chat_messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant", "tool", "developer"]) | values,
        "content": texts | st.lists(values, max_size=3) | values,
    },
    optional={"tool_calls": values, "tool_call_id": values, "name": values},
)
chat_bodies = st.fixed_dictionaries(
    {"model": models, "messages": st.lists(chat_messages, max_size=3) | values},
    optional={
        "stream": st.booleans() | values,
        "tools": values,
        "tool_choice": values,
        "max_tokens": values,
        "stream_options": values,
        "n": values,
        "response_format": values,
    },
)


@settings(FUZZ, max_examples=600)
@given(data=st.data())
def test_fuzz_doors(harness: Harness, data: st.DataObject) -> None:
    """Bedrock, Vertex and OpenAI doors: Messages and Chat bodies, mutations, garbage and deep
    nesting; every refusal in the door's own error shape, never a 5xx."""
    path, shape = data.draw(st.sampled_from(DOORS))
    body = data.draw(
        encoded()
        | chat_bodies.map(lambda b: json.dumps(b).encode())
        | st.binary(max_size=2_000)
        | nested()
    )
    key = data.draw(st.sampled_from([harness.gateway.key, harness.policy_key]))
    harness.send("POST", path, body, {"authorization": f"Bearer {key}"}, shape)


ROUTES = ["/", "/healthz", "/readyz", "/v1/models", "/v1/messages", "/v1/messages/count_tokens"]


@settings(FUZZ, max_examples=400)
@given(data=st.data())
def test_fuzz_routes_and_methods(harness: Harness, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]))
    suffix = data.draw(
        st.sampled_from(["", "/", "/x", "%00", "/..", "?a=1"])
        | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
    )
    path = data.draw(st.sampled_from([*ROUTES, "/v1/models/"])) + suffix
    if not path.startswith("/"):
        path = "/" + path
    body = data.draw(st.none() | st.binary(max_size=200)) if method in ("POST", "PUT") else None
    with contextlib.suppress(aiohttp.InvalidURL):  # a path the client itself will not send
        harness.send(method, path, body, data.draw(headers(harness)))


# --- odd framing on a raw socket ----------------------------------------------------------

FRAMES = [
    b"Content-Length: -1\r\n\r\n{}",
    b"Content-Length: abc\r\n\r\n{}",
    b"Content-Length: 99999999999999999999999\r\n\r\n{}",
    b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"Content-Length: 50\r\n\r\n{}",  # shorter than declared, then the client closes
]


@pytest.mark.parametrize("path", PROXY_PATHS)
@pytest.mark.parametrize("frame", FRAMES)
def test_odd_framing_gets_no_5xx(harness: Harness, path: str, frame: bytes) -> None:
    async def exchange() -> bytes:
        port = harness.gateway.server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {harness.gateway.key}\r\n"
        writer.write(head.encode() + frame)
        await writer.drain()
        if frame.startswith(b"Content-Length: 50"):
            writer.write_eof()
        try:
            return await asyncio.wait_for(reader.read(65536), 10)
        finally:
            writer.close()

    answer = harness.run(exchange())
    harness.seen.append(0)
    if answer:  # a closed connection is a fair answer to broken framing
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:300]


# --- item 3's property: what policy judged is what goes upstream -------------------------


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def _key(draw: st.DrawFn, name: str) -> str:
    """``name`` as a JSON key, sometimes with an escape (the same key once decoded)."""
    if draw(st.booleans()):
        return json.dumps(name)
    at = draw(st.integers(0, len(name) - 1))
    return '"' + name[:at] + f"\\u{ord(name[at]):04x}" + name[at + 1 :] + '"'


@st.composite
def _object(draw: st.DrawFn, members: list[tuple[str, str]]) -> str:
    """A JSON object text from (name, value text) pairs, in a drawn order and spacing."""
    members = draw(st.permutations(members))
    colon, comma = draw(st.sampled_from([(":", ","), (" : ", " , "), (": ", ",\n ")]))
    return "{" + comma.join(_key(draw, k) + colon + v for k, v in members) + "}"


@st.composite
def _entry(draw: st.DrawFn, names: list[str], extra: tuple[str, str]) -> str:
    members = [("name", json.dumps(draw(st.sampled_from(names)))), extra]
    if draw(st.booleans()):  # a repeated name inside the entry
        members.append(("name", json.dumps(draw(st.sampled_from(names)))))
    return draw(_object(members))


@st.composite
def _array(draw: st.DrawFn, names: list[str], extra: tuple[str, str]) -> str:
    entries = draw(st.lists(_entry(names, extra), max_size=3))
    return "[" + ",".join(entries) + "]"


@st.composite
def ambiguous(draw: st.DrawFn) -> bytes:
    servers = _array(["github", "docs"], ("url", '"https://mcp.example/x"'))
    tool_list = _array(["Bash", "Read"], ("input_schema", "{}"))
    models = st.sampled_from([*MODELS, "fast"]).map(json.dumps)
    members = [
        ("model", draw(models)),
        ("max_tokens", "16"),
        ("messages", '[{"role":"user","content":"hi"}]'),
    ]
    if draw(st.booleans()):
        members.append(("mcp_servers", draw(servers)))
    if draw(st.booleans()):
        members.append(("tools", draw(tool_list)))
    repeats = {"model": models, "mcp_servers": servers, "tools": tool_list}
    for name in draw(st.lists(st.sampled_from(sorted(repeats)), max_size=2)):
        members.append((name, draw(repeats[name])))
    return draw(_object(members)).encode()


@settings(FUZZ, max_examples=300)
@given(body=ambiguous())
def test_what_policy_judged_is_what_is_relayed(harness: Harness, body: bytes) -> None:
    before = len(harness.fake.requests)
    status, _ = harness.send("POST", "/v1/messages", body, {"x-api-key": harness.policy_key})
    if status != 200:
        assert status == 400  # a repeated member: refused, naming it
        return
    (relayed,) = harness.fake.requests[before:]
    for hook in (_first_wins, dict):  # read as a first-wins and as a last-wins parser would
        parsed = json.loads(relayed.body, object_pairs_hook=hook)
        assert parsed["model"] in MODELS
        assert all(t["name"] != "Bash" for t in parsed.get("tools", []))
        assert all(s["name"] != "github" for s in parsed.get("mcp_servers", []))
