"""Capture what a Claude Code CLI sends, into replayable fixtures.

    .venv/bin/python scripts/capture_fixtures.py \
        --claude .cache/claude-code/2.1.332/node_modules/.bin/claude

Runs the real CLI against Sluice's recording fake upstreams (``sluice.testing``: the same fakes the
tests use, on localhost; nothing leaves the machine) through a set of scenarios, and writes every
request the CLI made as one JSON file, in the format of ``tests/fixtures/claude-code/`` (method,
path, headers in wire order and case, body), into ``tests/fixtures/claude-code-<version>/``:

- ``text``: one prompt, a text answer;
- ``tool-loop``: the model calls Bash, the CLI runs it and sends the result back;
- ``tool-denied``: the same call with Bash disallowed: the CLI answers with an error result;
- ``subagent``: the model calls the subagent tool; the subagent's own requests follow;
- ``bedrock``, ``vertex``: Claude Code in Bedrock and in Vertex mode, against the fake Bedrock
  and Vertex endpoints (the requests a Bedrock/Vertex ingress door must accept);
- ``compaction``: a prompt, then ``/compact`` in a second ``--print --resume`` of the same
  session (2.1.332 sends it as request class ``compaction``; 2.1.197 sends none).

Every run sets ``CLAUDE_CODE_GATEWAY_HINT_HEADERS=1``, as the README asks teams to. The
credentials in the files are the fakes' (``test-token``), never real ones. ``--only NAME``
captures one run into an existing folder, numbered as in the full list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.testing import FakeAnthropic, FakeBedrock, FakeVertex, scenario_by_name
from sluice.testing.fake_server import FakeServer
from sluice.testing.recorded import RecordedRequest
from sluice.testing.scenarios import Reply, Scenario, TextBlock, ToolUseBlock

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token"  # noqa: S105 (the fakes' token, never a real credential)
SUBAGENT_MARKER = "SLUICE_SUBAGENT_TASK: reply with the word done."


@dataclass
class Run:
    name: str
    prompt: str
    scenario: Scenario
    args: list[str] = field(default_factory=list)
    mode: str = "anthropic"  # anthropic | bedrock | vertex
    follow_up: str | None = None  # a second prompt, resuming the same session


class _SubagentScenario(Scenario):
    """The main agent calls the subagent tool once; every later request (the subagent's, whose
    prompt is the marker, and the main agent's, whose history holds the call) gets text."""

    def __init__(self, tool_name: str) -> None:
        call = ToolUseBlock(
            tool_name,
            {
                "description": "Check one thing",
                "prompt": SUBAGENT_MARKER,
                "subagent_type": "general-purpose",
            },
        )
        super().__init__(Reply([call]), after_tools=Reply([TextBlock("All done.")]))

    def reply_for(self, payload: Any) -> Reply:
        if SUBAGENT_MARKER in json.dumps(payload.get("messages", [])):
            return Reply([TextBlock("done")])
        return super().reply_for(payload)


def runs(subagent_tool: str) -> list[Run]:
    return [
        Run("text", "Say hello.", scenario_by_name("text")),
        Run("tool-loop", "List the files here.", scenario_by_name("tool_bash")),
        Run(
            "tool-denied",
            "List the files here.",
            scenario_by_name("tool_denied"),
            ["--disallowedTools", "Bash"],
        ),
        Run("subagent", "Delegate a check to a subagent.", _SubagentScenario(subagent_tool)),
        Run("bedrock", "Say hello.", scenario_by_name("text"), mode="bedrock"),
        Run("vertex", "Say hello.", scenario_by_name("text"), mode="vertex"),
        Run("compaction", "Say hello.", scenario_by_name("text"), follow_up="/compact"),
    ]


def _env(mode: str, url: str, home: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1",
        "IS_SANDBOX": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    if mode == "bedrock":
        env |= {
            "CLAUDE_CODE_USE_BEDROCK": "1",
            "ANTHROPIC_BEDROCK_BASE_URL": url,
            "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
            "AWS_REGION": "us-east-1",
            "AWS_BEARER_TOKEN_BEDROCK": TOKEN,
        }
    elif mode == "vertex":
        env |= {
            "CLAUDE_CODE_USE_VERTEX": "1",
            "ANTHROPIC_VERTEX_BASE_URL": f"{url}/v1",
            "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
            "ANTHROPIC_VERTEX_PROJECT_ID": "test-project",
            "CLOUD_ML_REGION": "us-east5",
            "ANTHROPIC_AUTH_TOKEN": TOKEN,
        }
    else:
        env |= {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_AUTH_TOKEN": TOKEN}
    return env


async def _run_cli(claude: Path, run: Run, url: str) -> str:
    """Run the CLI (twice, resuming one session, for a follow-up); what it sent is what
    counts, so a hang is reported, not fatal."""
    session = str(uuid.uuid4())
    first = ["--print", run.prompt, "--session-id", session]
    prompts = [first] + ([["--print", run.follow_up, "--resume", session]] if run.follow_up else [])
    with tempfile.TemporaryDirectory() as tmp:
        outcome = ""
        for prompt in prompts:
            args = [str(claude), *prompt, "--dangerously-skip-permissions", *run.args]
            try:
                proc = await asyncio.to_thread(
                    subprocess.run,
                    args,
                    cwd=tmp,
                    env=_env(run.mode, url, Path(tmp) / "home"),
                    capture_output=True,
                    text=True,
                    timeout=90,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return "timed out after 90 s"
            outcome = f"exit {proc.returncode}"
    return outcome


def _record(n: int, request: RecordedRequest) -> dict[str, Any]:
    """One request in the fixtures' format."""
    path = request.path + (f"?{request.query}" if request.query else "")
    try:
        body: Any = json.loads(request.body) if request.body else None
    except ValueError:
        body = None
    return {
        "n": n,
        "ts": time.time(),
        "client": "127.0.0.1",
        "method": request.method,
        "path": path,
        "http_version": "HTTP/1.1",
        "headers": [list(h) for h in request.headers],
        "body_bytes": len(request.body),
        "content_encoding": request.header("content-encoding"),
        "body": body,
        "body_text": None if body is not None or not request.body else request.body.decode(),
    }


async def capture(claude: Path, out: Path, subagent_tool: str, only: str | None = None) -> int:
    written = 0
    fakes: dict[str, FakeServer] = {
        "anthropic": FakeAnthropic(),
        "bedrock": FakeBedrock(),
        "vertex": FakeVertex(),
    }
    for fake in fakes.values():
        await fake.start()
    try:
        for index, run in enumerate(runs(subagent_tool), start=1):
            if only is not None and run.name != only:
                continue
            fake = fakes[run.mode]
            fake.set_default(run.scenario)
            fake.requests.clear()
            outcome = await _run_cli(claude, run, fake.url)
            print(f"{run.name}: {outcome}, {len(fake.requests)} requests")
            for n, request in enumerate(fake.requests, start=1):
                name = f"{index:02d}-{run.name}-{n:02d}.json"
                (out / name).write_text(json.dumps(_record(n, request), indent=1) + "\n")
                written += 1
    finally:
        for fake in fakes.values():
            await fake.stop()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claude", type=Path, required=True, help="the `claude` to capture")
    parser.add_argument("--out", type=Path, help="default: tests/fixtures/claude-code-<version>")
    parser.add_argument(
        "--subagent-tool", default="Agent", help="the CLI's subagent tool (2.1.332: Agent)"
    )
    parser.add_argument("--only", help="capture only this run (text, compaction, ...)")
    args = parser.parse_args()
    version = subprocess.run(  # noqa: S603 (the operator's own CLI path)
        [str(args.claude), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    out = args.out or REPO / "tests" / "fixtures" / f"claude-code-{version}"
    if out.exists() and args.only is None:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    written = asyncio.run(capture(args.claude, out, args.subagent_tool, args.only))
    print(f"{written} requests from Claude Code {version} in {out}")


if __name__ == "__main__":
    main()
