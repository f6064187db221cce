"""What durable acknowledgement costs the ledger writer, measured in-process.

``c`` simulated requests at a time each finish by ``record`` (rows flushed by the timer: a
kill -9 loses up to ``flush_interval_ms`` of them), ``commit`` (group commit: the response
waits for its row's transaction) or ``journal`` (``commit`` with SQLite's default, the local
journal: the row is appended to a segment file and the response goes on). Reported per row:
the process CPU it cost (all threads, so the aiosqlite thread counts), the wait ``commit``
added (p50/p99), and how many rows each transaction carried. CPU per row is the number that
stays meaningful on a shared, loaded machine; req/s of the full gateway does not.

    .venv/bin/python bench/ledger_commit.py [--rows 20000] [--database sqlite|postgresql]
        [--work-us 300]

``--work-us`` burns that much CPU per simulated request before its row (Sluice (full) costs
~300 µs a request on a quiet machine, BENCHMARKS.md), so batches form as in a busy gateway
and rows/s of record vs commit is the throughput ratio durable acknowledgement costs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sluice.base.settlement import Settlement
from sluice.store.db import create_engine, migrate
from sluice.store.ledger import LedgerWriter
from sluice.store.ledger_journal import LedgerJournal

PG = "postgresql://postgres@127.0.0.1:5432/test"


def _row(i: int, tag: str) -> Settlement:
    return Settlement(
        request_id=f"{tag}-{i}",
        created_at=int(time.time() * 1000),
        endpoint="messages",
        streaming=True,
        status=200,
        duration_ms=5,
        client_disconnected=False,
        input_tokens=3,
        output_tokens=4,
    )


def _burn(us: float) -> None:
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


async def _one(url: str, mode: str, rows: int, concurrency: int, work_us: float) -> dict[str, Any]:
    engine = create_engine(url)
    await migrate(engine)
    journal = None
    if mode == "journal":
        journal = LedgerJournal(Path(tempfile.mkdtemp(prefix="sluice-journal-")))
    writer = LedgerWriter(engine, journal=journal)  # batches of 200, a 200 ms timer
    writer.start()
    tag = f"{mode}-{concurrency}-{time.monotonic_ns()}"
    waits: list[float] = []
    queue = iter(range(rows))

    async def request() -> None:
        for i in queue:
            await asyncio.sleep(0)  # the rest of the request: one trip through the loop
            _burn(work_us)
            if mode in ("commit", "journal"):
                began = time.perf_counter()
                await writer.commit(_row(i, tag))
                waits.append(time.perf_counter() - began)
            else:
                writer.record(_row(i, tag))

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*[request() for _ in range(concurrency)])
    await writer.stop()  # record's rows are only durable once flushed: count that too
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await engine.dispose()
    ms = sorted(w * 1000 for w in waits)
    return {
        "mode": mode,
        "c": concurrency,
        "cpu_us_per_row": round(cpu / rows * 1e6, 1),
        "rows_per_s": round(rows / wall),
        "wait_p50_ms": round(statistics.median(ms), 2) if ms else None,
        "wait_p99_ms": round(ms[int(len(ms) * 0.99)], 2) if ms else None,
        "rows_per_transaction": round(rows / max(writer.transactions, 1), 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=3, help="alternating A/B rounds")
    parser.add_argument("--work-us", type=float, default=0.0, help="CPU per simulated request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}" if args.database == "sqlite" else PG
        print("| round | mode | c | CPU µs/row | rows/s | wait p50 ms | wait p99 ms | rows/txn |")
        print("|---|---|---|---|---|---|---|---|")
        for round_ in range(args.repeat):
            for concurrency in (1, 16, 64):
                for mode in ("record", "commit", "journal"):
                    if mode == "journal" and args.database != "sqlite":
                        continue
                    r = await _one(url, mode, args.rows, concurrency, args.work_us)
                    print(
                        f"| {round_ + 1} | {r['mode']} | {r['c']} | {r['cpu_us_per_row']} | "
                        f"{r['rows_per_s']:,} | {r['wait_p50_ms']} | {r['wait_p99_ms']} | "
                        f"{r['rows_per_transaction']} |",
                        flush=True,
                    )


if __name__ == "__main__":
    asyncio.run(main())
