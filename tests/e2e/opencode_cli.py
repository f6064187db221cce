"""Run the real opencode CLI, an agent that speaks OpenAI Chat Completions, against a gateway's
``/v1`` door (POST /v1/chat/completions), from async tests.

The binary is ``$SLUICE_OPENCODE_BIN`` if set (``scripts/test.sh`` installs the pinned version
into ``<repo>/.cache/opencode/<version>`` and sets it), else the newest version found under
``<repo>/.cache/opencode/``. A missing binary is a failure, not a skip: the test exists to prove
the door works with a real agent.

opencode talks to the gateway through a custom provider on its bundled
``@ai-sdk/openai-compatible`` package (docs/connect-openai-agents.md), and to nothing else:
the models.dev catalogue fetch and the self-update are off, the npm registry it asks for its
plugin package is an address where nothing listens, and the title agent (a second model call
per session) is disabled, so each agent step is exactly one request through the door.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from claude_cli import run_cli

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "opencode"
PROVIDER = "sluice"  # the provider id in opencode's config: models are "sluice/<model>"
NOWHERE = "http://127.0.0.1:9/"  # the discard port: nothing listens, a connect fails at once


def _version_key(path: Path) -> tuple[int, ...]:
    parts = path.parents[2].name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()


def opencode_bin() -> Path:
    """The opencode executable; fails the test (never skips) when it is not installed."""
    configured = os.environ.get("SLUICE_OPENCODE_BIN")
    if configured:
        path = Path(configured)
    else:
        found = sorted(CACHE.glob("*/node_modules/.bin/opencode"), key=_version_key)
        path = found[-1] if found else CACHE / "<version>" / "node_modules" / ".bin" / "opencode"
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"SLUICE_OPENCODE_BIN={configured}" if configured else str(path)
        pytest.fail(
            f"opencode CLI not found at {where}. Run `bash scripts/test.sh`, which installs "
            "it, or set SLUICE_OPENCODE_BIN to an installed `opencode`.",
            pytrace=False,
        )
    return path


def opencode_config(base_url: str, api_key: str, model: str) -> dict[str, Any]:
    """opencode's config for a gateway: the exact shape docs/connect-openai-agents.md shows."""
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "permission": {"bash": "allow", "edit": "allow"},
        "agent": {"title": {"disable": True}},
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Sluice",
                "options": {"baseURL": base_url, "apiKey": api_key},
                "models": {model: {"name": f"{model} via Sluice", "tool_call": True}},
            }
        },
        "model": f"{PROVIDER}/{model}",
    }


@dataclass(frozen=True)
class OpencodeResult:
    rc: int
    stdout: str
    stderr: str
    elapsed: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)  # `--format json` lines

    def parts(self, kind: str) -> list[dict[str, Any]]:
        """The ``part`` of every event of this type (text, tool_use, step_finish...)."""
        return [e["part"] for e in self.events if e.get("type") == kind]

    @property
    def text(self) -> str:
        return "".join(p.get("text", "") for p in self.parts("text"))

    def describe(self) -> str:
        return (
            f"rc={self.rc} after {self.elapsed:.1f}s\n--- stdout ---\n{self.stdout}"
            f"\n--- stderr ---\n{self.stderr}"
        )


async def run_opencode(
    prompt: str,
    *,
    base_url: str,
    api_key: str,
    model: str,
    cwd: Path,
    home: Path,
    timeout: float = 120,
) -> OpencodeResult:
    """``opencode run --format json PROMPT`` with its config in ``home`` and an environment
    built from scratch (not os.environ). On timeout the process is killed and the test fails
    with whatever it printed so far."""
    config_dir = home / ".config" / "opencode"
    config_dir.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    config = opencode_config(base_url, api_key, model)
    (config_dir / "opencode.json").write_text(json.dumps(config, indent=2))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "npm_config_registry": NOWHERE,
    }
    args = ["run", "--format", "json", "--model", f"{PROVIDER}/{model}", prompt]

    rc, stdout, stderr, elapsed, timed_out = await run_cli(opencode_bin(), args, cwd, env, timeout)
    result = OpencodeResult(rc, stdout, stderr, elapsed, _events(stdout))
    if timed_out:
        pytest.fail(
            f"opencode did not finish within {timeout}s and was killed; prompt={prompt!r}\n"
            f"{result.describe()}",
            pytrace=False,
        )
    return result


def _events(stdout: str) -> list[dict[str, Any]]:
    events = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events
