"""The edge limits as uvicorn's ``http`` option: a picklable factory with light imports.

``--workers`` pickles uvicorn's config into each spawned worker, and a worker must answer its
supervisor's health ping within 5 s of starting: unpickling must not import the config models
or the protocol (seconds on a loaded machine). So this module imports nearly nothing, and the
protocol class is imported on the first connection.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any, cast

from sluice.config.models import ServerConfig


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    body_idle_timeout_s: float
    max_connections: int | None

    @classmethod
    def from_server(cls, server: ServerConfig) -> EdgeLimits:
        return cls(
            server.max_header_bytes,
            server.max_headers,
            server.header_timeout_s,
            server.body_idle_timeout_s,
            server.max_connections,
        )


def build_protocol(*args: Any, limits: EdgeLimits, **kwargs: Any) -> asyncio.Protocol:
    from sluice.server.http_protocol import SluiceHttpProtocol

    return SluiceHttpProtocol(*args, limits=limits, **kwargs)


def http_protocol(server: ServerConfig) -> type[asyncio.Protocol]:
    """The value for uvicorn's ``http`` option: the edge protocol bound to these limits."""
    factory = functools.partial(build_protocol, limits=EdgeLimits.from_server(server))
    # uvicorn only calls it (with keyword arguments); a partial pickles, a new class would not.
    return cast("type[asyncio.Protocol]", factory)
