"""A local OTLP/HTTP trace receiver for the tracing benchmark: decodes every export (as a real
collector would) and counts spans. ``GET /count`` returns the total."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import uvloop
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


async def serve(port: int) -> None:
    counter = {"spans": 0, "posts": 0}

    async def export(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        counter["posts"] += 1
        counter["spans"] += sum(
            len(s.spans) for rs in message.resource_spans for s in rs.scope_spans
        )
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def count(_request: web.Request) -> web.Response:
        return web.json_response(counter)

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"otlp sink on http://127.0.0.1:{port}/v1/traces", flush=True)
    await asyncio.Event().wait()  # until killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
