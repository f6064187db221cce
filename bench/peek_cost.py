"""Peek cost per Claude Code fixture body: this tree's peek against another tree's.

    python bench/peek_cost.py [OTHER_SRC]   # e.g. /work/main/src; µs per body, best of N

Interleaved in one process (both peeks take turns on each body), so machine load hits both
alike. The pretty-printed column times this tree's exact duplicate walk (whitespace between
members defeats the compact fast check).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

from sluice.core.context import RequestContext
from sluice.core.peek import peek_messages_body

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = [ROOT / "tests/fixtures/claude-code", Path("/work/shared/fixtures/claude-code")]


def load_other(src: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("other_peek", Path(src) / "sluice/core/peek.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_peek"] = module  # msgspec resolves the Struct's annotations through it
    spec.loader.exec_module(module)
    return module


def bodies() -> list[tuple[str, bytes]]:
    out = []
    for folder in FIXTURES:
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            body = json.loads(path.read_text()).get("body")
            if isinstance(body, dict) and "messages" in body:
                raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
                out.append((f"{folder.parent.name}/{path.name}", raw))
    return out


def best_us(fns: list[Any], body: bytes, number: int = 100, repeat: int = 15) -> list[float]:
    """Best µs per call of each peek, taking turns on every repeat."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):

            def once(fn: Any = fn) -> None:
                fn(RequestContext("r", "messages", "/v1/messages", "", [], 0.0, 0, body, body))

            best[i] = min(best[i], timeit.timeit(once, number=number) / number * 1e6)
    return best


def main() -> None:
    fns: list[Any] = [peek_messages_body]
    if len(sys.argv) > 1:
        fns.insert(0, load_other(sys.argv[1]).peek_messages_body)
    rows = []
    for name, raw in bodies():
        pretty = json.dumps(json.loads(raw), indent=2, ensure_ascii=False).encode()
        times = best_us(fns, raw)
        base, this = times if len(times) == 2 else [float("nan"), *times]
        rows.append((name, len(raw), base, this, best_us([peek_messages_body], pretty)[0]))
    print(f"{'body':58} {'KB':>6} {'other':>8} {'this':>8} {'pretty':>8}  (µs per body)")
    for name, size, base, this, pretty in rows:
        print(f"{name:58} {size / 1000:6.1f} {base:8.1f} {this:8.1f} {pretty:8.1f}")
    n = len(rows)
    means = [sum(r[i] for r in rows) / n for i in (2, 3, 4)]
    print(f"{'mean':58} {'':6} {means[0]:8.1f} {means[1]:8.1f} {means[2]:8.1f}")


if __name__ == "__main__":
    main()
