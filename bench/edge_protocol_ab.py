"""CPU per request of uvicorn's HttpToolsProtocol against Sluice's edge-limited subclass.

Only the protocol: a fake transport, a trivial ASGI app (reads the body, answers 200), one
kept-alive connection, interleaved rounds, process CPU time. Much less sensitive to a busy
machine than the overhead benchmark, and it isolates what server/http_protocol.py adds::

    .venv/bin/python bench/edge_protocol_ab.py --body 76000 --requests 3000 --rounds 11
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from sluice.config.models import ServerConfig
from sluice.server.edge_limits import EdgeLimits
from sluice.server.http_protocol import SluiceHttpProtocol
from sluice.testing.transport import RecordingTransport

READ = 65536  # bytes per data_received call


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def run(kind: str, n: int, body: bytes, config: Config, state: ServerState) -> float:
    head = (
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n"
        + b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 40) for i in range(18))
        + b"content-length: %d\r\n\r\n" % len(body)
    )
    request = head + body
    reads = [request[i : i + READ] for i in range(0, len(request), READ)]
    proto: HttpToolsProtocol
    if kind == "stock":
        proto = HttpToolsProtocol(config=config, server_state=state, app_state={})
    else:
        limits = EdgeLimits.from_server(ServerConfig())
        proto = SluiceHttpProtocol(config=config, server_state=state, app_state={}, limits=limits)
    proto.connection_made(RecordingTransport(record=False))
    started = time.process_time()
    for _ in range(n):
        for data in reads:
            proto.data_received(data)
            await asyncio.sleep(0)
        for _ in range(3):  # let the app task finish the response
            await asyncio.sleep(0)
    elapsed = time.process_time() - started
    proto.connection_lost(None)
    return elapsed / n * 1e6


async def main(args: argparse.Namespace) -> None:
    config = Config(app, http="httptools", lifespan="off", log_config=None, access_log=False)
    config.load()
    state = ServerState()
    body = b"x" * args.body
    results: dict[str, list[float]] = {"stock": [], "sluice": []}
    for kind in results:  # warm-up
        await run(kind, 300, body, config, state)
    for r in range(args.rounds):
        for kind in ("stock", "sluice") if r % 2 else ("sluice", "stock"):
            results[kind].append(await run(kind, args.requests, body, config, state))
    for kind, values in results.items():
        print(
            f"{kind:7s} body={len(body)} B: median {statistics.median(values):.1f} µs/request, "
            f"min {min(values):.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    uvloop.run(main(parser.parse_args()))
