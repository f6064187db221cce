"""The upstream client keeps no cookies. One pooled session serves every key, so a cookie an
upstream sets (Cloudflare's ``__cf_bm`` in front of a provider, say) would otherwise ride
along on every later request, whoever sends it: state shared across tenants."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from support import serve_app, start_gateway

_MESSAGE = {
    "id": "msg_cookie",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 1},
}


async def test_a_cookie_set_by_the_upstream_is_never_sent_back(tmp_path: Path) -> None:
    cookies_seen: list[str | None] = []

    async def messages(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        response = web.Response(body=orjson.dumps(_MESSAGE), content_type="application/json")
        response.headers.add("Set-Cookie", "__cf_bm=set-for-whoever-came-first; Path=/")
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    async with serve_app(app) as upstream:
        # A host name, not an IP: aiohttp's default jar ignores cookies from IP hosts.
        gw = await start_gateway(tmp_path / "s.db", upstream.replace("127.0.0.1", "localhost"))
        try:
            other = await gw.mint(name="bob-laptop", principal="bob")
            body = orjson.dumps(
                {
                    "model": "claude-haiku-4-5-20251001",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}],
                }
            )
            async with aiohttp.ClientSession() as client:
                for key in (gw.key, other.secret, gw.key):
                    async with client.post(
                        gw.url + "/v1/messages", data=body, headers={"x-api-key": key}
                    ) as r:
                        assert r.status == 200, await r.text()
                        # Cookies of the provider's domain are not relayed to the client.
                        assert "Set-Cookie" not in r.headers
        finally:
            await gw.server.stop()
    assert cookies_seen == [None, None, None]
