"""The real Claude Code CLI through Sluice to a fake upstream: the raw lane end to end.

Claude Code -> RecordingProxy (this module) -> Sluice -> FakeAnthropic. The proxy is a raw TCP
relay that parses HTTP/1.1 only to record what crossed it, so the upstream's recorded body can be
compared to the exact bytes Claude Code put on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sluice.config.vk import VirtualKeyConfig
from sluice.testing import (
    FakeAnthropic,
    FakeUsage,
    Fault,
    RecordedRequest,
    Reply,
    Scenario,
    TextBlock,
    scenario_by_name,
)

from claude_cli import ClaudeResult, claude_version, run_claude
from support import PROVIDER_KEY, Gateway

pytestmark = pytest.mark.e2e

PRINT = ["--bare", "--disable-slash-commands", "--print"]
UNKNOWN_KEY = "lw_vk_live_" + "0" * 26 + "x" * 32
TOO_LONG = "prompt is too long: 250000 tokens > 200000 maximum"
ORG_DENIED = "sluice-e2e: model access denied for org periwinkle (ref 4711)"


def error_json(message: str) -> bytes:
    error = {"type": "invalid_request_error", "message": message}
    return json.dumps({"type": "error", "error": error}, separators=(",", ":")).encode()


# --- a byte-recording HTTP/1.1 relay --------------------------------------------------------


@dataclass
class Exchange:
    """One request as the client sent it, and the gateway's answer as relayed back."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""  # de-chunked

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        return _first(self.headers, name)

    def response_header(self, name: str) -> str | None:
        return _first(self.response_headers, name)


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    return next((v for k, v in headers if k.lower() == lname), None)


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _is_chunked(headers: list[tuple[str, str]]) -> bool:
    return "chunked" in (_first(headers, "transfer-encoding") or "").lower()


async def _relay_chunked(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> bytes:
    """Forward a chunked body verbatim, chunk by chunk; return the de-chunked payload."""
    payload = bytearray()
    while True:
        size_line = await src.readuntil(b"\r\n")
        dst.write(size_line)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (trailer := await src.readuntil(b"\r\n")) != b"\r\n":
                dst.write(trailer)
            dst.write(trailer)
            await dst.drain()
            return bytes(payload)
        data = await src.readexactly(size + 2)
        dst.write(data)
        payload += data[:-2]
        await dst.drain()


async def _relay_exact(src: asyncio.StreamReader, dst: asyncio.StreamWriter, n: int) -> bytes:
    payload = bytearray()
    while len(payload) < n:
        chunk = await src.read(min(65536, n - len(payload)))
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(payload), n)
        dst.write(chunk)
        payload += chunk
        await dst.drain()
    return bytes(payload)


class RecordingProxy:
    """Relays every byte unchanged in both directions and records each exchange."""

    def __init__(self, target_url: str) -> None:
        parts = urllib.parse.urlsplit(target_url)
        assert parts.hostname is not None and parts.port is not None
        self._target = (parts.hostname, parts.port)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.exchanges: list[Exchange] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def posts(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "POST" and e.path == "/v1/messages"]

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self._target)
            pending: asyncio.Queue[Exchange] = asyncio.Queue()
            requests = asyncio.create_task(self._requests(client_r, upstream_w, pending))
            try:
                await self._responses(upstream_r, client_w, pending)
            finally:
                requests.cancel()
                await asyncio.gather(requests, return_exceptions=True)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(task)
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()

    async def _requests(
        self,
        client_r: asyncio.StreamReader,
        upstream_w: asyncio.StreamWriter,
        pending: asyncio.Queue[Exchange],
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await client_r.readuntil(b"\r\n\r\n")
                upstream_w.write(head)
                request_line, headers = _parse_head(head)
                method, target, _ = request_line.split(" ", 2)
                exchange = Exchange(method, target, headers)
                self.exchanges.append(exchange)
                pending.put_nowait(exchange)
                if _is_chunked(headers):
                    exchange.body = await _relay_chunked(client_r, upstream_w)
                else:
                    length = int(_first(headers, "content-length") or 0)
                    exchange.body = await _relay_exact(client_r, upstream_w, length)
                await upstream_w.drain()
        # The client closed its side: pass the half-close on, so the gateway closes too.
        with contextlib.suppress(OSError):
            upstream_w.write_eof()

    async def _responses(
        self,
        upstream_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        pending: asyncio.Queue[Exchange],
    ) -> None:
        while True:
            try:
                head = await upstream_r.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as eof:
                client_w.write(eof.partial)
                return
            client_w.write(head)
            status_line, headers = _parse_head(head)
            status = int(status_line.split(" ", 2)[1])
            if status < 200:  # 100 Continue: the real answer follows
                await client_w.drain()
                continue
            exchange = await pending.get()
            exchange.status = status
            exchange.response_headers = headers
            if exchange.method == "HEAD" or status in (204, 304):
                pass
            elif _is_chunked(headers):
                exchange.response_body = await _relay_chunked(upstream_r, client_w)
            elif (length := _first(headers, "content-length")) is not None:
                exchange.response_body = await _relay_exact(upstream_r, client_w, int(length))
            else:  # delimited by close
                body = bytearray()
                while chunk := await upstream_r.read(65536):
                    client_w.write(chunk)
                    body += chunk
                exchange.response_body = bytes(body)
                await client_w.drain()
                return
            await client_w.drain()


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
async def proxy(gateway: Gateway) -> AsyncIterator[RecordingProxy]:
    recorder = RecordingProxy(gateway.url)
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.stop()


async def claude(
    proxy: RecordingProxy, tmp_path: Path, prompt: str, *extra: str, **kwargs: object
) -> ClaudeResult:
    """`claude --bare --disable-slash-commands --print PROMPT ...` through the recorder."""
    return await run_claude(
        [*PRINT, prompt, *extra],
        base_url=proxy.url,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
        **kwargs,  # type: ignore[arg-type]
    )


def header_values(request: RecordedRequest, name: str) -> list[str]:
    return [v for k, v in request.headers if k.lower() == name.lower()]


def assert_vk_not_forwarded(request: RecordedRequest, vk: str) -> None:
    assert header_values(request, "authorization") == []
    assert header_values(request, "x-api-key") == [PROVIDER_KEY]
    secret_part = vk[-32:]
    for name, value in request.headers:
        assert vk not in value and secret_part not in value, f"VK leaked in header {name}"
    assert vk.encode() not in request.body


def assert_warmup_answered(proxy: RecordingProxy) -> None:
    """2.1.197 sends a HEAD / warm-up before the prompt; 2.1.332 sends none in --bare mode.
    Whatever the CLI sends is answered 200 without credentials."""
    heads = [e for e in proxy.exchanges if e.method == "HEAD" and e.target == "/"]
    if claude_version() < (2, 1, 332):
        assert heads, f"Claude Code's HEAD / warm-up never reached the gateway: {proxy.exchanges}"
    for head in heads:
        assert head.status == 200
        assert head.header("authorization") is None  # the warm-up carries no credentials


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["auth_token", "api_key"])
async def test_print_relays_exact_bytes_and_writes_ledger_row(
    auth: str, fake: FakeAnthropic, gateway: Gateway, proxy: RecordingProxy, tmp_path: Path
) -> None:
    text = "Sluice-e2e says hi: periwinkle-4711"
    usage = FakeUsage(
        input_tokens=100,
        output_tokens=20,
        cache_read_input_tokens=2048,
        cache_creation_5m=512,
        cache_creation_1h=256,
    )
    fake.script(Scenario(Reply(blocks=[TextBlock(text)], usage=usage)))

    result = await claude(proxy, tmp_path, "say hi", **{auth: gateway.key})

    assert result.rc == 0, result.describe()
    assert text in result.stdout
    assert_warmup_answered(proxy)

    # What Claude Code sent, as recorded between it and the gateway.
    [sent] = proxy.posts()
    assert sent.query == "beta=true"
    assert sent.status == 200
    if auth == "auth_token":
        assert sent.header("authorization") == f"Bearer {gateway.key}"
    else:
        assert sent.header("x-api-key") == gateway.key

    # What the upstream received.
    [got] = fake.messages_requests()
    assert got.path == "/v1/messages"
    assert urllib.parse.parse_qs(got.query) == {"beta": ["true"]}
    assert_vk_not_forwarded(got, gateway.key)
    for name in ("anthropic-beta", "anthropic-version", "user-agent", "x-claude-code-session-id"):
        assert got.header(name), f"{name} missing upstream"
        assert got.header(name) == sent.header(name), f"{name} changed in transit"
    assert (got.header("user-agent") or "").startswith("claude-cli/")
    assert "claude-code-20250219" in (got.header("anthropic-beta") or "")

    # Byte-for-byte: the upstream got exactly what Claude Code put on the wire.
    assert len(sent.body) > 1000
    assert got.body == sent.body
    assert hashlib.sha256(got.body).hexdigest() == hashlib.sha256(sent.body).hexdigest()

    # The ledger row for that request.
    body = json.loads(sent.body)
    session_id = got.header("x-claude-code-session-id")
    assert session_id == json.loads(body["metadata"]["user_id"])["session_id"]
    request_id = sent.response_header("request-id")
    assert request_id is not None and request_id.startswith("req_")
    row = await gateway.ledger_row(request_id)
    assert row["vk_id"] == gateway.minted.key.id
    assert row["principal"] == "alice"
    assert row["project"] == "web"
    assert row["endpoint"] == "messages"
    assert row["status"] == 200
    assert row["error_code"] is None
    assert row["streaming"] is True
    assert row["provider"] == "anthropic-primary"
    assert row["model_requested"] == body["model"]
    assert row["model_sent"] == body["model"]
    assert row["stop_reason"] == "end_turn"
    assert row["input_tokens"] == 100
    assert row["output_tokens"] == 20
    assert row["cache_read_tokens"] == 2048
    assert row["cache_creation_tokens"] == 768
    assert row["cache_creation_5m_tokens"] == 512
    assert row["cache_creation_1h_tokens"] == 256
    assert row["session_id"] == session_id
    assert row["upstream_request_id"] == f"req_fake_{fake.requests.index(got) + 1}"
    assert row["attempts"] == 1
    assert row["client_disconnected"] is False
    assert [r["request_id"] for r in await gateway.ledger_rows()] == [request_id]


async def test_tool_loop_runs_bash_and_returns_tool_result(
    fake: FakeAnthropic, gateway: Gateway, proxy: RecordingProxy, tmp_path: Path
) -> None:
    marker = tmp_path / "work" / "sluice-tool-marker"
    done = "The marker file now exists."
    fake.script(
        scenario_by_name("tool_bash", bash_command=f"touch {marker}"),
        Scenario(Reply(blocks=[TextBlock(done)])),
    )

    result = await claude(
        proxy, tmp_path, "create the marker", "--allowedTools", "Bash", auth_token=gateway.key
    )

    assert result.rc == 0, result.describe()
    assert done in result.stdout
    assert marker.exists(), "Claude Code did not run the Bash tool"
    first, second = fake.messages_requests()  # exactly two turns reached the upstream
    sent = proxy.posts()
    assert [e.body for e in sent] == [first.body, second.body]
    for got in (first, second):
        assert_vk_not_forwarded(got, gateway.key)

    # The tool_use id the client saw in turn 1 comes back as the tool_result's tool_use_id.
    assert b'"id":"toolu_fake_' in sent[0].response_body
    tool_use_id = next(
        json.loads(line[6:])["content_block"]["id"]
        for line in sent[0].response_body.decode().splitlines()
        if line.startswith("data: ") and '"tool_use"' in line
    )
    assert tool_use_id == f"toolu_fake_{fake.requests.index(first) + 1}_1"
    messages = second.json()["messages"]
    assistant = next(m for m in reversed(messages) if m["role"] == "assistant")
    echoed = [b for b in assistant["content"] if b["type"] == "tool_use"]
    assert [(b["id"], b["name"], b["input"]["command"]) for b in echoed] == [
        (tool_use_id, "Bash", f"touch {marker}")
    ]
    last = messages[-1]
    assert last["role"] == "user"
    results = [b for b in last["content"] if b.get("type") == "tool_result"]
    assert [b["tool_use_id"] for b in results] == [tool_use_id]
    assert results[0].get("is_error") is False

    session = first.header("x-claude-code-session-id")
    assert session and second.header("x-claude-code-session-id") == session

    rows = [await gateway.ledger_row(e.response_header("request-id") or "") for e in sent]
    assert [r["stop_reason"] for r in rows] == ["tool_use", "end_turn"]
    assert [r["status"] for r in rows] == [200, 200]
    assert {r["session_id"] for r in rows} == {session}
    assert len(await gateway.ledger_rows()) == 2


async def test_revoked_key_is_refused_before_the_upstream(
    fake: FakeAnthropic, gateway: Gateway, proxy: RecordingProxy, tmp_path: Path
) -> None:
    await gateway.admin.set_status(gateway.minted.key.id, "revoked")

    result = await claude(proxy, tmp_path, "say hi", auth_token=gateway.key)

    assert result.rc != 0, result.describe()
    message = f"Virtual key {gateway.minted.key.display_prefix}… has been revoked."
    assert message in result.stdout, result.describe()
    assert fake.messages_requests() == []
    [sent] = proxy.posts()  # a 403 is final: Claude Code does not retry it
    assert sent.status == 403
    error = json.loads(sent.response_body)["error"]
    assert (error["type"], error["message"]) == ("virtual_key_revoked", message)
    row = await gateway.ledger_row(sent.response_header("request-id") or "")
    assert (row["status"], row["error_code"]) == (403, "virtual_key_revoked")
    assert row["vk_id"] == gateway.minted.key.id  # a refused known key is still charged


async def test_unknown_key_fails_fast_without_client_retries(
    fake: FakeAnthropic, gateway: Gateway, proxy: RecordingProxy, tmp_path: Path
) -> None:
    # CLAUDE_CODE_MAX_RETRIES stays unset: Claude Code would retry a plain 401 ten times over
    # about three minutes; Sluice's `x-should-retry: false` must stop that.
    result = await claude(proxy, tmp_path, "say hi", auth_token=UNKNOWN_KEY, max_retries=None)

    assert result.rc != 0, result.describe()
    assert result.elapsed < 30, result.describe()
    assert "Invalid API key" in result.stdout, result.describe()
    assert fake.messages_requests() == []
    [sent] = proxy.posts()
    assert sent.status == 401
    assert sent.response_header("x-should-retry") == "false"
    assert json.loads(sent.response_body)["error"]["type"] == "invalid_api_key"
    for _, value in sent.response_headers:
        assert UNKNOWN_KEY not in value
    assert UNKNOWN_KEY.encode() not in sent.response_body


async def test_unknown_model_costs_at_most_two_requests_and_shows_the_cli_model_message(
    fake: FakeAnthropic, gateway: Gateway, proxy: RecordingProxy, tmp_path: Path
) -> None:
    # A gateway 400 made the CLI retry without betas and tools (6 POSTs for one --print);
    # Anthropic's own 404 not_found_error makes it stop and point at /model.
    result = await claude(
        proxy,
        tmp_path,
        "say hi",
        "--model",
        "gpt-nonexistent",
        api_key=gateway.key,
        max_retries=None,
    )

    assert result.rc != 0, result.describe()
    assert fake.messages_requests() == []
    posts = proxy.posts()
    assert 1 <= len(posts) <= 2, [p.status for p in posts]
    assert all(p.status == 404 for p in posts)
    error = json.loads(posts[0].response_body)["error"]
    assert error["type"] == "not_found_error" and "claude-opus-4-8" in error["message"]
    assert "selected model" in result.stdout.lower() or "/model" in result.stdout, result.describe()


@pytest.mark.parametrize(
    ("message", "printed"),
    [
        # Claude Code recognises this one and prints its own wording, built from the numbers.
        (TOO_LONG, ["Prompt is too long", "~250000 tokens (limit 200000)"]),
        # Any other message is shown as is.
        (ORG_DENIED, [f"API Error: 400 {ORG_DENIED}"]),
    ],
    ids=["prompt_too_long", "generic"],
)
async def test_upstream_json_error_reaches_the_cli_verbatim(
    message: str,
    printed: list[str],
    fake: FakeAnthropic,
    gateway: Gateway,
    proxy: RecordingProxy,
    tmp_path: Path,
) -> None:
    upstream_body = error_json(message)
    # Every attempt fails: 2.1.197 treats a 400 as final; 2.1.332 retries a 400 it does not
    # recognise once more, with betas and tools stripped. Each attempt is relayed verbatim.
    fake.set_default(Scenario(fault=Fault(status=400, body=upstream_body)))

    result = await claude(proxy, tmp_path, "say hi", api_key=gateway.key)

    assert result.rc != 0, result.describe()
    for text in printed:
        assert text in result.stdout, result.describe()
    received, posts = fake.messages_requests(), proxy.posts()
    assert len(received) == len(posts) >= 1
    if claude_version() < (2, 1, 332):
        assert len(posts) == 1  # a 400 is final: no retry
    for got, sent in zip(received, posts, strict=True):
        assert got.body == sent.body
        assert sent.status == 400
        assert sent.response_body == upstream_body  # relayed byte for byte
        row = await gateway.ledger_row(sent.response_header("request-id") or "")
        assert row["status"] == 400
        assert row["vk_id"] == gateway.minted.key.id
        assert row["upstream_request_id"] == f"req_fake_{fake.requests.index(got) + 1}"


async def test_gateway_model_discovery_lists_the_keys_alias_and_the_cli_uses_it(
    fake: FakeAnthropic, gateway: Gateway, proxy: RecordingProxy, tmp_path: Path
) -> None:
    """CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1 (not --bare): the CLI asks
    `GET /v1/models?limit=1000` (3 s timeout, ids containing `claude` or `anthropic` kept).
    Sluice answers from memory with the key's aliases (display name and description) and the
    models it may use; the discovered alias, selected, is spliced to its model upstream."""
    alias, target = "claude-team-fast", "claude-haiku-4-5-20251001"
    minted = await gateway.mint(config=VirtualKeyConfig(model_aliases={alias: target}))
    text = "answered through the team alias"
    fake.set_default(Scenario(Reply(blocks=[TextBlock(text)])))
    result = await run_claude(
        ["--disable-slash-commands", "--model", alias, "--print", "say hi"],
        base_url=proxy.url,
        auth_token=minted.secret,
        cwd=tmp_path / "work",
        home=tmp_path / "home",
        extra_env={"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"},
    )
    assert result.rc == 0 and text in result.stdout, result.describe()
    if claude_version() >= (2, 1, 300):  # discovery exists in the newer CLI (guide, 2.1.332)
        [listing] = [e for e in proxy.exchanges if e.method == "GET" and e.path == "/v1/models"]
        assert listing.query == "limit=1000" and listing.status == 200
        models = {m["id"]: m for m in json.loads(listing.response_body)["data"]}
        assert models[alias]["display_name"] and target in models[alias]["description"]
        assert target in models
    [sent] = fake.messages_requests()
    assert json.loads(sent.body)["model"] == target


async def test_the_clis_cost_and_the_ledger_agree_despite_a_midstream_failure(
    fake: FakeAnthropic, gateway: Gateway, proxy: RecordingProxy, tmp_path: Path
) -> None:
    """The stream ends in `event: error` (overloaded) after three events; the CLI re-sends the
    request without `stream` and that answer counts. The CLI's own cost (`total_cost_usd`)
    and the ledger's total for the session are the same: the failed attempt keeps its row,
    its tokens and its error type, and costs 0."""
    usage = FakeUsage(
        input_tokens=1000, output_tokens=200, cache_read_input_tokens=5000, cache_creation_5m=300
    )
    answer = Reply(blocks=[TextBlock("hello there")], usage=usage)
    fake.script(Scenario(answer, fault=Fault(error_after_events=3)), Scenario(answer))
    result = await claude(
        proxy,
        tmp_path,
        "say hi",
        "--model",
        "claude-opus-4-8",
        "--output-format",
        "json",
        auth_token=gateway.key,
    )
    assert result.rc == 0, result.describe()
    cli_cost = json.loads(result.stdout)["total_cost_usd"]
    rows = await gateway.ledger_rows()
    assert [(r["streaming"], r["error_code"]) for r in rows] == [
        (True, "overloaded_error"),
        (False, None),
    ]
    assert rows[0]["input_tokens"] == 1000 and rows[0]["cost_micros"] == 0
    assert cli_cost > 0
    assert sum(r["cost_micros"] for r in rows) / 1e6 == pytest.approx(cli_cost, abs=1e-9)
