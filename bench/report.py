"""Turn per-round cells into medians, added latency, ratios, and a Markdown report."""

from __future__ import annotations

import statistics
from typing import Any

NA = "n/a"
TARGETS = ("direct", "bare", "sluice")
TARGET_LABELS = {"direct": "direct (no proxy)", "bare": "bare relay", "sluice": "Sluice (full)"}
# Paired per round against direct, then the median of the rounds.
ADDED = {"p50_ms": "added_p50_ms", "p99_ms": "added_p99_ms", "ttfb_p50_ms": "added_ttfb_ms"}
TARGETS_SPEC = {"rps": 1500.0, "small_added_p50": 1.0, "cc_added_p50": 2.0, "added_ttfb": 1.0}


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize_body(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """rounds: target -> one cell per round. Returns target -> medians (+ added vs direct)."""
    out: dict[str, Any] = {}
    direct = rounds.get("direct", [])
    for target, cells in rounds.items():
        keys = sorted({k for cell in cells for k in cell})
        med: dict[str, Any] = {k: _median([c.get(k) for c in cells]) for k in keys}
        if target != "direct" and direct:
            for metric, name in ADDED.items():
                diffs = [
                    c[metric] - d[metric]
                    for c, d in zip(cells, direct, strict=False)
                    if c.get(metric) is not None and d.get(metric) is not None
                ]
                med[name] = _median(list(diffs))
        out[target] = med
    return out


def ratios(summary: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    sluice = summary.get("sluice", {})
    for base in ("direct", "bare"):
        ref = summary.get(base, {})
        for conc in (1, 16, 64):
            key = f"rps_c{conc}"
            num, den = sluice.get(key), ref.get(key)
            out[f"sluice/{base}_c{conc}"] = num / den if num and den else None
    return out


def _f(value: float | None, digits: int = 2) -> str:
    return NA if value is None else f"{value:,.{digits}f}"


def _i(value: float | None) -> str:
    return NA if value is None else f"{value:,.0f}"


def _added(value: float | None) -> str:
    return NA if value is None else f"{value:+.2f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| body | target | req/s c=1 | req/s c=16 | req/s c=64 | p50 ms | p99 ms | "
        "added p50 ms | added p99 ms | SSE TTFB ms | added TTFB ms | CPU µs/req | RSS KiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for body in result["bodies"].values():
        for target in TARGETS:
            m = body["summary"].get(target)
            if m is None:
                continue
            lines.append(
                f"| {body['label']} | {TARGET_LABELS[target]} | {_i(m.get('rps_c1'))} | "
                f"{_i(m.get('rps_c16'))} | {_i(m.get('rps_c64'))} | {_f(m.get('p50_ms'))} | "
                f"{_f(m.get('p99_ms'))} | {_added(m.get('added_p50_ms'))} | "
                f"{_added(m.get('added_p99_ms'))} | {_f(m.get('ttfb_p50_ms'))} | "
                f"{_added(m.get('added_ttfb_ms'))} | {_i(m.get('cpu_us_per_req_c64'))} | "
                f"{_i(body['rss_kib'].get(target))} |"
            )
    lines += [
        "",
        "| body | sluice/direct c=1 | c=16 | c=64 | sluice/bare c=1 | c=16 | c=64 |",
        "|---|---|---|---|---|---|---|",
    ]
    for body in result["bodies"].values():
        r = body["ratios"]
        cells = [
            _f(r.get(f"sluice/{base}_c{c}")) for base in ("direct", "bare") for c in (1, 16, 64)
        ]
        lines.append(f"| {body['label']} | " + " | ".join(cells) + " |")
    lines += ["", *_error_lines(result), *_ceiling_lines(result), "", *_target_lines(result)]
    return "\n".join(lines) + "\n"


def _error_lines(result: dict[str, Any]) -> list[str]:
    """Non-200 answers and socket errors: a number measured on errors is not a number."""
    bad = [
        f"{body['label']} / {TARGET_LABELS[target]}: {sum(c.get('errors', 0) for c in cells)}"
        for body in result["bodies"].values()
        for target, cells in body["rounds"].items()
        if any(c.get("errors") for c in cells)
    ]
    if not bad:
        return ["Errors (non-200 answers, socket errors): none.", ""]
    return ["**Errors (non-200 answers, socket errors):** " + "; ".join(bad) + ".", ""]


def _ceiling_lines(result: dict[str, Any]) -> list[str]:
    ceil = result.get("loadgen_ceiling") or {}
    if not ceil:
        return []
    parts = [
        f"{tool} c={c}: {_i(ceil.get(f'{tool}_c{c}'))} req/s"
        for tool in ("python", "wrk")
        for c in (16, 64)
        if ceil.get(f"{tool}_c{c}") is not None
    ]
    meta = result["meta"]
    lines = [
        "Load generator ceiling (small body, direct to the fake upstream, sharing its core): "
        + "; ".join(parts)
        + f". req/s columns measured with: {meta['rps_tool']}."
    ]
    bg = meta.get("background_cpu_pct")
    if bg:
        lines += [
            "",
            "CPU used by other processes (not the benchmark's, not kernel threads) during the"
            f" cells: median {bg['median']}%, max {bg['max']}% of all cores."
            f" Idle cores kept awake: {meta.get('keep_awake')}.",
        ]
    return lines


def _target_lines(result: dict[str, Any]) -> list[str]:
    """Where Sluice stands against the goals (reported, not asserted)."""
    spec = TARGETS_SPEC
    lines = ["| goal (Sluice, one worker) | bound | measured | met |", "|---|---|---|---|"]
    for name, body in result["bodies"].items():
        s = body["summary"].get("sluice", {})
        p50_bound = spec["small_added_p50"] if name == "small" else spec["cc_added_p50"]
        peak = max((s.get("rps_c16") or 0.0, s.get("rps_c64") or 0.0), default=0.0) or None
        checks = [
            ("peak req/s (c=16/64)", spec["rps"], peak, True),
            ("added p50 ms", p50_bound, s.get("added_p50_ms"), False),
            ("added TTFB ms", spec["added_ttfb"], s.get("added_ttfb_ms"), False),
        ]
        for label, bound, value, higher in checks:
            goal = f">= {bound:,.0f}" if higher else f"<= {bound:g}"
            shown = _i(value) if higher else _f(value)
            if value is None:
                verdict = NA
            else:
                verdict = "yes" if (value >= bound if higher else value <= bound) else "**no**"
            lines.append(f"| {body['label']}: {label} | {goal} | {shown} | {verdict} |")
    return lines
