"""`sluice mock anthropic` serves the named scenario over real HTTP."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp


async def test_mock_anthropic_command() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "sluice"),
        "mock",
        "anthropic",
        "--port",
        str(port),
        "--scenario",
        "err529",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)  # a loaded machine imports slowly
        assert b"DEMO" in line and f":{port}".encode() in line and b"err529" in line
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"http://127.0.0.1:{port}/v1/messages?beta=true",
                data=b'{"model":"m","max_tokens":1,"messages":[]}',
            ) as r,
        ):
            assert r.status == 529
            assert (await r.json())["error"]["type"] == "overloaded_error"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            # communicate() drains both pipes, so a chatty child cannot block on a full one.
            _out, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            _out, err = await proc.communicate()
            raise AssertionError(f"no exit 30 s after Ctrl-C; stderr: {err[-2000:]!r}") from None
    assert proc.returncode == 0, err[-2000:]
