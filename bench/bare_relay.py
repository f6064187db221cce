"""The baseline: the thinnest relay on Sluice's stack, to tell stack cost from pipeline cost.

Raw ASGI on uvicorn (uvloop, httptools) and one pooled aiohttp ``ClientSession``. Every request
is forwarded as is (method, path, query, body, headers minus ``host``/``content-length``) and the
response is streamed back chunk by chunk. No auth, no ledger, no parsing, no error mapping.

    python bench/bare_relay.py --port 4001 --upstream http://127.0.0.1:8090
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_DROP_REQUEST = frozenset({b"host", b"content-length"})
# Framing is redone by uvicorn; everything else goes back as the upstream sent it.
_DROP_RESPONSE = frozenset({b"transfer-encoding", b"connection", b"keep-alive"})


class BareRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._relay(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The same pool settings as Sluice's AppState, so only the pipeline differs.
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0),
                    timeout=aiohttp.ClientTimeout(total=None, connect=10),
                    auto_decompress=False,
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.session is not None
        parts: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in _DROP_REQUEST
        ]
        query = scope["query_string"]
        url = self.upstream + scope["raw_path"].decode("latin-1")
        if query and b"?" not in scope["raw_path"]:
            url += "?" + query.decode("latin-1")
        async with self.session.request(
            scope["method"],
            url,
            data=body,
            headers=headers,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            allow_redirects=False,
        ) as resp:
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": [
                        (k.lower(), v)
                        for k, v in resp.raw_headers
                        if k.lower() not in _DROP_RESPONSE
                    ],
                }
            )
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4001)
    parser.add_argument("--upstream", default="http://127.0.0.1:8090")
    args = parser.parse_args()
    uvicorn.run(
        BareRelay(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        server_header=False,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
