"""Summarize a py-spy profile of the gateway by where the time goes.

Record one while load runs (py-spy is not a dependency: ``.venv/bin/pip install py-spy``)::

    taskset -c 1 wrk -t1 -c16 -d20s -s LUA http://127.0.0.1:PORT/v1/messages &
    py-spy record --pid PID --duration 15 --rate 400 --nonblocking --format raw -o prof.txt
    python bench/profile_summary.py prof.txt [--cpu-us-per-req 550] [--lines 15] [--src DIR]

Each sample is put in the first bucket that matches, walking from the innermost frame out, so
``orjson.loads`` called from ``ctx.parsed_body`` counts as the policy's full parse, and aiohttp
called from the provider counts as "aiohttp client". Shares are of all non-idle samples (every
thread). With ``--cpu-us-per-req`` (the CPU µs/req column of overhead.py) each share is also
shown in µs. ``--lines N`` also lists the N hottest innermost Sluice lines with their source
text (read from ``--src``, the snapshot that was profiled, or else from the import path).
"""

from __future__ import annotations

import argparse
import linecache
import re
import sys
from collections import Counter
from pathlib import Path

# Work done in C on one line of Python (a ``bytes in bytes`` scan) has no frame of its own:
# (bucket, function, text on the source line), checked against the innermost frame first.
LINE_BUCKETS: list[tuple[str, str, str]] = [
    ("policy: raw-body scans (b'\"mcp_servers\"' in ctx.body)", "Pipeline.admit", "in ctx.body"),
]
# (bucket, pattern over one frame "func (file:line)"), tried in order for each frame.
BUCKETS: list[tuple[str, re.Pattern[str]]] = [
    # Only keys with a policy pay these: URL rules, tool/MCP rules, opt-in tool modes.
    ("policy: full body parse (ctx.parsed_body, orjson.loads)", re.compile(r"parsed_body")),
    ("policy: last message parse (msgspec + orjson)", re.compile(r"last_message")),
    ("policy: URL scan (message text, regex)", re.compile(r"check_urls|_text_of")),
    (
        'policy: verdict fingerprint (find "stream", sha256 of the body)',
        re.compile(r"body_fingerprint|_without_stream"),
    ),
    ("policy: tool guard (response side)", re.compile(r"sluice/(governance|core)/tool_guard")),
    ("body peek (msgspec)", re.compile(r"peek_messages_body")),
    # The PostgreSQL + Redis row: redis-py under the budget counters and rate limits, asyncpg
    # under SQLAlchemy (the ledger, budget seeding).
    (
        "redis client (redis-py, the auto-pipeline: counters, rate limits, verdicts)",
        re.compile(r"(^|[(/])redis/|sluice/backends/redis_"),
    ),
    (
        "PostgreSQL driver (asyncpg; the ledger's own batch path)",
        re.compile(r"asyncpg/|ledger_postgres"),
    ),
    (
        "budgets and rate limits (Sluice's side)",
        re.compile(r"sluice/governance/(budgets|counters|rate_limits|windows)|redis_counters"),
    ),
    ("ledger: SQLite thread (aiosqlite, sqlite3)", re.compile(r"aiosqlite/")),
    # The stdlib writer's own thread (store/sqlite_thread.py), and the config version check.
    (
        "ledger and config sync: sqlite3 thread",
        re.compile(
            r"sluice/store/(sqlite_thread|ledger_sqlite|sqlite_batches)|_SqliteVersion|_read_version"
        ),
    ),
    ("ledger: SQLAlchemy on the event loop", re.compile(r"LedgerWriter|sqlalchemy/|greenlet")),
    ("key auth (parse, HMAC)", re.compile(r"KeyCache\.authenticate|vk_format|hmac\.py")),
    ("request id (ULID)", re.compile(r"ulid/|new_request_id")),
    ("settle (ledger row, access log)", re.compile(r"settle_request|_settle|settle\.py")),
    ("header filtering", re.compile(r"sluice/providers/headers\.py")),
    ("SSE tap", re.compile(r"streaming/")),
    (
        "governance (policy, model resolution, body edits)",
        re.compile(
            r"sluice/core/(pipeline|resolve|body_edit|json_spans)|sluice/base/json_spans|"
            r"sluice/governance/(policy|tool_guard|verdicts|model_access)|"
            r"list_models|display_name_for"
        ),
    ),
    ("aiohttp client", re.compile(r"aiohttp/|multidict|yarl/")),
    ("uvicorn server", re.compile(r"uvicorn/(protocols|middleware)")),
    ("sluice glue (routing, relay, context)", re.compile(r"sluice/")),
    ("asyncio (tasks, timeouts)", re.compile(r"asyncio/(?!runners)")),
    ("threads (other)", re.compile(r"threading\.py")),
]
_LOOP = "event loop C code (uvloop I/O, callbacks)"
_FRAME = re.compile(r"^(?P<func>.+) \((?P<file>[^()]+):(?P<line>\d+)\)$")
# Blocking waits py-spy sometimes reports as active: (function, text of the source line).
_WAITS = (("_connection_worker_thread", "tx.get("),)


SOURCE_ROOTS: list[Path] = []  # --src first, then the import path


def _source_line(file: str, line: int) -> str:
    for root in [*SOURCE_ROOTS, *map(Path, sys.path)]:
        candidate = root / file
        if candidate.is_file():
            return linecache.getline(str(candidate), line)
    return ""


def is_wait(frame: str) -> bool:
    match = _FRAME.match(frame)
    if match is None:
        return False
    for func, text in _WAITS:
        if match["func"] == func:
            return text in _source_line(match["file"], int(match["line"]))
    return False


def bucket_of(frames: list[str]) -> str | None:
    """The bucket of one sample, or None for a thread that is only waiting."""
    if not frames or is_wait(frames[-1]):
        return None
    if "runners.py" in frames[-1]:
        return _LOOP
    inner = _FRAME.match(frames[-1])
    if inner is not None:
        for name, func, text in LINE_BUCKETS:
            if inner["func"] == func and text in _source_line(inner["file"], int(inner["line"])):
                return name
    for frame in reversed(frames):
        for name, pattern in BUCKETS:
            if pattern.search(frame):
                return name
    return "other"


def _samples(path: Path) -> list[tuple[list[str], int]]:
    out: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            out.append((frames, int(n)))
    return out


def summarize(path: Path) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    for frames, n in _samples(path):
        bucket = bucket_of(frames)
        if bucket is not None:
            counts[bucket] += n
            total += n
    return counts, total


def hot_lines(path: Path) -> Counter[str]:
    """Samples per innermost Sluice frame (what Sluice code was running, or calling into)."""
    lines: Counter[str] = Counter()
    for frames, n in _samples(path):
        if bucket_of(frames) is None:
            continue
        own = [f for f in frames if "sluice/" in f]
        if own:
            lines[own[-1]] += n
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--cpu-us-per-req", type=float, help="to convert shares into µs/req")
    parser.add_argument("--lines", type=int, default=0, help="list the N hottest Sluice lines")
    parser.add_argument("--src", type=Path, help="the profiled source tree (dir holding sluice/)")
    args = parser.parse_args()
    if args.src is not None:
        SOURCE_ROOTS.insert(0, args.src)
    counts, total = summarize(args.profile)
    us = args.cpu_us_per_req
    head = "| where | share |" + (" µs/req |" if args.cpu_us_per_req else "")
    print(head)
    print("|---|---|" + ("---|" if args.cpu_us_per_req else ""))
    for name, n in counts.most_common():
        share = n / total if total else 0.0
        row = f"| {name} | {100 * share:.1f}% |"
        if args.cpu_us_per_req:
            row += f" {share * args.cpu_us_per_req:.0f} |"
        print(row)
    print(f"\n{total} samples")
    if args.lines:
        print("\n| innermost Sluice frame | source | share |" + (" µs/req |" if us else ""))
        print("|---|---|---|" + ("---|" if us else ""))
        for frame, n in hot_lines(args.profile).most_common(args.lines):
            match = _FRAME.match(frame)
            text = _source_line(match["file"], int(match["line"])).strip() if match else ""
            text = text.replace("|", "\\|")  # inside a Markdown table
            share = n / total if total else 0.0
            row = f"| `{frame}` | `{text}` | {100 * share:.1f}% |"
            if us:
                row += f" {share * us:.0f} |"
            print(row)


if __name__ == "__main__":
    main()
