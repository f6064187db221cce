"""Turn detection's cost as the history grows: ``detect_turn`` timed on Claude Code-shaped
histories, this tree against another revision.

Tracing (on by default) finds every request's turn in the gateway, on the event loop, by
walking back from the last message to the one that opened the turn. The captured bodies the
other benchmarks send have 2-4 messages; a long Claude Code session sends hundreds. Cases:

- one turn that is a tool loop of N steps (an assistant ``tool_use`` and a user
  ``tool_result`` of S bytes each) after its prompt: the walk crosses the whole history;
- the request that opens the next turn after it (a fresh prompt: the walk stops at once);
- a long session: 40 earlier turns of 5 such steps, then a turn 5 steps in (the walk crosses
  10 messages of ~400);
- the two captured tool-loop turns;
- where the tree has ``history.Recall`` (a gateway remembers where a long conversation's turn
  opened): each tool loop again, as the next request of a conversation the process saw
  (``..., recalled``), compared with the other side's whole read of the same history.

Each side runs in its own process with its own code (``git archive REV src``, or the working
tree's ``src/``), three times, alternating; a case reports its best timing. Both sides must
find the same turn. On this VM identical code measured 0.70-1.62 on the captured turns in a
run: on the small cases only a difference repeated across runs means anything.

    .venv/bin/python bench/turn_detection.py --against f985a7f

Not a test: CI never runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bodies import FIXTURES
from overhead import REPO, extract_src

LOOPS = ((10, 2000), (20, 2000), (50, 10_000), (200, 5000))  # (steps, tool result bytes)

_TIMER = r"""
import json, sys, timeit
import msgspec, orjson
from sluice.telemetry.turns import detect_turn
try:
    from sluice.telemetry.history import Recall
except ImportError:  # a revision from before it
    Recall = None

def loop(steps, size, prompt="go", start=0):
    msgs = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    for i in range(start, start + steps):
        msgs.append({"role": "assistant", "content": [
            {"type": "text", "text": "I'll read it. " * 20},
            {"type": "tool_use", "id": f"t{i}", "name": "Read", "input": {"file_path": "/x"}}]})
        msgs.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"t{i}", "content": "x" * size}]})
    return msgs

cases = {}
recalled = {}
for steps, size in json.loads(sys.argv[1]):
    history = loop(steps, size)
    nxt = [{"role": "assistant", "content": [{"type": "text", "text": "done"}]},
           {"role": "user", "content": [{"type": "text", "text": "next"}]}]
    cases[f"tool loop, {steps} steps of {size} B"] = orjson.dumps(history)
    if Recall is not None:  # the previous request (one step less), seen by this process
        seen = Recall()
        detect_turn(msgspec.Raw(orjson.dumps(history[:-2])), "s", "r", recall=seen)
        recalled[f"tool loop, {steps} steps of {size} B, recalled"] = seen.learnt
    cases[f"the next prompt after {steps} steps"] = orjson.dumps(history + nxt)
session = []
for turn in range(40):
    session += loop(5, 5000, f"prompt {turn}", start=turn * 5)
    session.append({"role": "assistant", "content": [{"type": "text", "text": "done"}]})
session += loop(5, 5000, "the last prompt", start=1000)
cases["a session of 40 turns, the last 5 steps in"] = orjson.dumps(session)
for path in json.loads(sys.argv[2]):
    with open(path) as f:
        messages = json.load(f)["body"]["messages"]
    cases["captured: " + path.rsplit("/", 1)[-1]] = orjson.dumps(messages)
for name, known in recalled.items():
    cases[name] = cases[name.removesuffix(", recalled")]
out = {}
for name, encoded in cases.items():
    raw = msgspec.Raw(encoded)
    number = max(20, int(400_000 / len(encoded)))
    known = recalled.get(name)
    call = lambda: detect_turn(raw, "s", "r", **({"recall": Recall(known)} if known else {}))
    best = min(timeit.repeat(call, number=number, repeat=7))
    turn = call()
    out[name] = {"bytes": len(encoded), "us": best / number * 1e6,
                 "turn": [turn.trace_id, turn.opening_index, turn.opens, turn.message_count]}
print(json.dumps(out))
"""


def _time(src: Path) -> dict[str, dict[str, object]]:
    names = ("10-tool-loop-turn1.json", "11-tool-loop-turn2-tool_result.json")
    fixtures = [str(FIXTURES / name) for name in names]
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [sys.executable, "-c", _TIMER, json.dumps(LOOPS), json.dumps(fixtures)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def _best(runs: list[dict[str, dict[str, object]]]) -> dict[str, dict[str, object]]:
    """Per case, the run with the lowest time."""
    return {
        name: min((run[name] for run in runs), key=lambda c: float(str(c["us"])))
        for name in runs[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extract_src(args.against, Path(tmp))
        runs = [(_time(Path(tmp) / "src"), _time(REPO / "src")) for _ in range(3)]
    before = _best([b for b, _ in runs])
    after = _best([a for _, a in runs])
    print(f"| history | bytes | {args.against} µs | this tree µs | after / before |")
    print("|---|---|---|---|---|")
    for name, now in after.items():
        then = before.get(name) or before[name.removesuffix(", recalled")]
        if then["turn"] != now["turn"]:
            raise SystemExit(f"{name}: the two revisions find different turns")
        ratio = float(str(now["us"])) / float(str(then["us"]))
        print(f"| {name} | {now['bytes']:,} | {then['us']:,.1f} | {now['us']:,.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
