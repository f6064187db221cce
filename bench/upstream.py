"""The fake Anthropic upstream for benchmarks: ``sluice.testing.FakeAnthropic`` with bounded memory.

Same server and bytes as ``sluice mock anthropic``, but the list of recorded requests is
emptied every half second. The fake records every request with its body (tests inspect
them); at thousands of 124 KB requests a second that would grow by hundreds of MB a second.

    python bench/upstream.py --port 8090 [--scenario text]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import uvloop

from sluice.testing.fake_anthropic import FakeAnthropic
from sluice.testing.scenarios import scenario_by_name

_CLEAR_EVERY_S = 0.5


async def serve(host: str, port: int, scenario: str) -> None:
    fake = FakeAnthropic(scenario_by_name(scenario), host=host, port=port)
    async with fake:
        print(f"bench upstream on {fake.url} scenario={scenario}", flush=True)
        while True:
            await asyncio.sleep(_CLEAR_EVERY_S)
            fake.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--scenario", default="text")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.scenario))


if __name__ == "__main__":
    main()
