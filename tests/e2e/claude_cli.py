"""Run the real Claude Code CLI against a gateway, from async tests.

The binary is ``$SLUICE_CLAUDE_BIN`` if set (``scripts/test.sh`` installs each CLI version into
``<repo>/.cache/claude-code/<version>`` and runs this lane once with the pinned version and once
with the newest on npm), else ``<repo>/.cache/claude-code/node_modules/.bin/claude``. A missing
binary is a failure, not a skip: the e2e lane exists to prove Sluice works with the real client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / ".cache" / "claude-code" / "node_modules" / ".bin" / "claude"


def claude_bin() -> Path:
    """The Claude Code executable; fails the test (never skips) when it is not installed."""
    configured = os.environ.get("SLUICE_CLAUDE_BIN")
    path = Path(configured) if configured else DEFAULT_BIN
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"SLUICE_CLAUDE_BIN={configured}" if configured else str(DEFAULT_BIN)
        pytest.fail(
            f"Claude Code CLI not found at {where}. Run `bash scripts/test.sh`, which installs "
            "it, or set SLUICE_CLAUDE_BIN to an installed `claude`.",
            pytrace=False,
        )
    return path


@functools.cache
def _version_of(path: Path) -> tuple[int, ...]:
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    return tuple(int(part) for part in out.stdout.split()[0].split("."))


def claude_version() -> tuple[int, ...]:
    """The CLI's version, e.g. (2, 1, 332): for the few checks of behaviour that changed
    between the pinned and the newest release (docs/claude-code.md)."""
    return _version_of(claude_bin())


@dataclass(frozen=True)
class ClaudeResult:
    rc: int
    stdout: str
    stderr: str
    elapsed: float = 0.0

    def describe(self) -> str:
        return (
            f"rc={self.rc} after {self.elapsed:.1f}s\n--- stdout ---\n{self.stdout}"
            f"\n--- stderr ---\n{self.stderr}"
        )


async def run_claude(
    args: list[str],
    *,
    base_url: str,
    auth_token: str | None = None,
    api_key: str | None = None,
    cwd: Path,
    home: Path,
    extra_env: dict[str, str] | None = None,
    timeout: float = 120,
    max_retries: int | None = 0,
) -> ClaudeResult:
    """Run ``claude *args`` with a minimal environment built from scratch (not os.environ).

    ``max_retries=None`` leaves CLAUDE_CODE_MAX_RETRIES unset (Claude Code's default, 10).
    On timeout the process is killed and the test fails with whatever it printed so far.
    """
    home.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "IS_SANDBOX": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    if auth_token is not None:
        env["ANTHROPIC_AUTH_TOKEN"] = auth_token
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    env.update(extra_env or {})

    rc, stdout, stderr, elapsed, timed_out = await run_cli(claude_bin(), args, cwd, env, timeout)
    result = ClaudeResult(rc, stdout, stderr, elapsed)
    if timed_out:
        pytest.fail(
            f"claude did not finish within {timeout}s and was killed; args={args}\n"
            f"{result.describe()}",
            pytrace=False,
        )
    return result


async def run_cli(
    binary: Path, args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int, str, str, float, bool]:
    """Run a CLI to its end or ``timeout``: (rc, stdout, stderr, seconds, timed out). A timed
    out (or cancelled) process is killed, never leaked."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out_buf, err_buf = bytearray(), bytearray()
    readers = [
        asyncio.ensure_future(_drain(proc.stdout, out_buf)),
        asyncio.ensure_future(_drain(proc.stderr, err_buf)),
    ]
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        # A grandchild (a Bash tool command) could hold the pipes open: don't wait forever.
        _, pending = await asyncio.wait(readers, timeout=5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    assert proc.returncode is not None
    out, err = out_buf.decode(errors="replace"), err_buf.decode(errors="replace")
    return proc.returncode, out, err, time.monotonic() - started, timed_out


async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(65536):
        into.extend(chunk)
