"""Turn per-round cells into medians, added latency, ratios, and a Markdown report."""

from __future__ import annotations

import statistics
from typing import Any

NA = "n/a"
# "baseline", "budget", "whole" and "pg" are optional (--against, --budgets, --pg-redis): a run
# has the targets it measured. "baseline" next to "sluice", so the two are measured one after
# the other.
TARGETS = ("direct", "bare", "sluice", "baseline", "policy", "budget", "whole", "pg")
TARGET_LABELS = {
    "direct": "direct (no proxy)",
    "bare": "bare relay",
    "sluice": "Sluice (full)",
    "baseline": "Sluice (full) at the --against revision",  # _label names the revision
    "policy": "Sluice + policy (20 patterns)",
    "budget": "Sluice + 2 budgets + rate limit",
    "whole": "Sluice, all on one key: policy + 2 budgets + rate limit",
    "pg": "Sluice on PostgreSQL + Redis (budgets + rate limit)",
}
# Targets paired per round with Sluice (full): what the key, the backend (or the revision) adds.
VS_SLUICE_TARGETS = ("policy", "budget", "whole", "pg", "baseline")
# The ones in the "minus Sluice (full)" table; the baseline has its own, now-vs-baseline one.
MINUS_SLUICE_ROWS = ("policy", "budget", "whole", "pg")
# Paired per round against direct, then the median of the rounds.
ADDED = {"p50_ms": "added_p50_ms", "p99_ms": "added_p99_ms", "ttfb_p50_ms": "added_ttfb_ms"}
# The policy target paired per round against Sluice (full): what the key's policy adds.
VS_SLUICE = {
    "p50_ms": "vs_sluice_p50_ms",
    "p99_ms": "vs_sluice_p99_ms",
    "ttfb_p50_ms": "vs_sluice_ttfb_ms",
    "cpu_us_per_req_c64": "vs_sluice_cpu_us_per_req_c64",
}
TARGETS_SPEC = {
    "rps": 1500.0,
    "small_added_p50": 1.0,
    "cc_added_p50": 2.0,
    "added_ttfb": 1.0,
    "policy_vs_sluice_p50": 0.2,
    "budget_vs_sluice_rps": 0.85,
    "whole_vs_bare_rps": 0.7,  # issue #12: the whole pipeline on one key, against the bare relay
}


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _paired(cells: list[dict[str, Any]], base: list[dict[str, Any]], metric: str) -> float | None:
    """Median over rounds of (cell - base) for ``metric``, the two measured in the same round."""
    diffs: list[float | None] = [
        c[metric] - b[metric]
        for c, b in zip(cells, base, strict=False)
        if c.get(metric) is not None and b.get(metric) is not None
    ]
    return _median(diffs)


def _paired_ratio(
    cells: list[dict[str, Any]], base: list[dict[str, Any]], metric: str
) -> float | None:
    """Median over rounds of cell / base for ``metric``, the two measured in the same round."""
    ratios: list[float | None] = [
        c[metric] / b[metric]
        for c, b in zip(cells, base, strict=False)
        if c.get(metric) and b.get(metric)
    ]
    return _median(ratios)


def now_vs_baseline(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, float | None]:
    """Sluice (full) against the --against revision, each number the median over rounds of a
    per-round pairing: req/s now/baseline, CPU µs per request at c=64 (both, now minus
    baseline), added p50 at c=1 (both, each minus direct)."""
    now, base, direct = rounds["sluice"], rounds["baseline"], rounds["direct"]
    cpu = "cpu_us_per_req_c64"
    out = {f"rps_c{c}_ratio": _paired_ratio(now, base, f"rps_c{c}") for c in (1, 16, 64)}
    out |= {
        f"{cpu}_now": _median([c.get(cpu) for c in now]),
        f"{cpu}_baseline": _median([c.get(cpu) for c in base]),
        f"{cpu}_diff": _paired(now, base, cpu),
        "added_p50_ms_now": _paired(now, direct, "p50_ms"),
        "added_p50_ms_baseline": _paired(base, direct, "p50_ms"),
    }
    return out


def summarize_body(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """rounds: target -> one cell per round. Returns target -> medians (+ added vs direct;
    for the policy target also the difference to Sluice (full))."""
    out: dict[str, Any] = {}
    direct = rounds.get("direct", [])
    sluice = rounds.get("sluice", [])
    for target, cells in rounds.items():
        keys = sorted({k for cell in cells for k in cell})
        med: dict[str, Any] = {k: _median([c.get(k) for c in cells]) for k in keys}
        if target != "direct" and direct:
            for metric, name in ADDED.items():
                med[name] = _paired(cells, direct, metric)
        if target in VS_SLUICE_TARGETS and sluice:
            for metric, name in VS_SLUICE.items():
                med[name] = _paired(cells, sluice, metric)
        out[target] = med
    return out


RATIOS = (
    ("sluice", "direct"),
    ("sluice", "bare"),
    ("whole", "bare"),
    ("policy", "sluice"),
    ("budget", "sluice"),
    ("pg", "sluice"),
    ("baseline", "sluice"),
)


def _ratios_in(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The RATIOS whose two targets some body measured (the optional rows may be absent)."""
    have = {t for body in result["bodies"].values() for t in body["summary"]}
    return [(t, b) for t, b in RATIOS if t in have and b in have]


def ratios(summary: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for target, base in RATIOS:
        if target not in summary:
            continue
        num_m, den_m = summary.get(target, {}), summary.get(base, {})
        for conc in (1, 16, 64):
            key = f"rps_c{conc}"
            num, den = num_m.get(key), den_m.get(key)
            out[f"{target}/{base}_c{conc}"] = num / den if num and den else None
    return out


def _label(result: dict[str, Any], target: str) -> str:
    against = result["meta"].get("against")
    if target == "baseline" and against:
        return f"Sluice (full) at {against['commit']}"
    return TARGET_LABELS[target]


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
                f"| {body['label']} | {_label(result, target)} | {_i(m.get('rps_c1'))} | "
                f"{_i(m.get('rps_c16'))} | {_i(m.get('rps_c64'))} | {_f(m.get('p50_ms'))} | "
                f"{_f(m.get('p99_ms'))} | {_added(m.get('added_p50_ms'))} | "
                f"{_added(m.get('added_p99_ms'))} | {_f(m.get('ttfb_p50_ms'))} | "
                f"{_added(m.get('added_ttfb_ms'))} | {_i(m.get('cpu_us_per_req_c64'))} | "
                f"{_i(body['rss_kib'].get(target))} |"
            )
    pairs = _ratios_in(result)
    head = " | ".join(f"{t}/{b} c=1 | c=16 | c=64" for t, b in pairs)
    lines += ["", f"| body | {head} |", "|---|" + "---|" * 3 * len(pairs)]
    for body in result["bodies"].values():
        r = body["ratios"]
        cells = [_f(r.get(f"{t}/{b}_c{c}")) for t, b in pairs for c in (1, 16, 64)]
        lines.append(f"| {body['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        *_ab_lines(result),
        *_policy_lines(result),
        *_error_lines(result),
        *_ceiling_lines(result),
        "",
        *_target_lines(result),
    ]
    return "\n".join(lines) + "\n"


def _ab_lines(result: dict[str, Any]) -> list[str]:
    """Now (this run's code) against the --against revision: a same-run A/B."""
    against = result["meta"].get("against")
    if not against:
        return []
    rev, code = against["commit"], result["meta"]["code"]
    lines = [
        f"Now vs {rev} ({against['commit_subject']}): Sluice (full), now = {code['source']}"
        f" ({code['commit']}), against a second process running {rev}, measured in the same"
        " rounds; each number is the median over rounds of a per-round pairing (req/s"
        " now/baseline; CPU now minus baseline; p50 minus direct):",
        "",
        f"| body | req/s now/{rev} c=1 | c=16 | c=64 | CPU µs/req (c=64) now | {rev} | now - {rev} "
        f"| added p50 ms now | {rev} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cpu = "cpu_us_per_req_c64"
    for body in result["bodies"].values():
        ab = body.get("now_vs_baseline")
        if ab is None:
            continue
        ratios = " | ".join(_f(ab.get(f"rps_c{c}_ratio"), 3) for c in (1, 16, 64))
        lines.append(
            f"| {body['label']} | {ratios} | {_i(ab.get(f'{cpu}_now'))} | "
            f"{_i(ab.get(f'{cpu}_baseline'))} | {_signed_i(ab.get(f'{cpu}_diff'))} | "
            f"{_added(ab.get('added_p50_ms_now'))} | {_added(ab.get('added_p50_ms_baseline'))} |"
        )
    return [*lines, ""]


def _policy_lines(result: dict[str, Any]) -> list[str]:
    """What a key's policy, budgets or backend cost: the target minus Sluice (full), paired per
    round."""
    if not any("policy" in body["summary"] for body in result["bodies"].values()):
        return []
    n = result["meta"].get("policy_patterns", 20)
    have = {t for body in result["bodies"].values() for t in body["summary"]}
    notes = {
        "policy": f"policy = {n} deny patterns, same process (so RSS is shared)",
        "budget": "budgets = same process, a third key",
        "whole": "all on one key = same process, a fourth key (the policy and the budgets)",
        "pg": "PostgreSQL + Redis = a second process (its CPU excludes postgres, redis-server)",
    }
    lines = [
        "Each target minus Sluice (full), paired per round: "
        + "; ".join(text for target, text in notes.items() if target in have)
        + ":",
        "",
        "| body | target | p50 ms | p99 ms | TTFB ms | CPU µs/req (c=64) |",
        "|---|---|---|---|---|---|",
    ]
    for body in result["bodies"].values():
        for target in MINUS_SLUICE_ROWS:
            m = body["summary"].get(target)
            if m is None:
                continue
            label = TARGET_LABELS[target]
            lines.append(
                f"| {body['label']} | {label} | {_added(m.get('vs_sluice_p50_ms'))} | "
                f"{_added(m.get('vs_sluice_p99_ms'))} | {_added(m.get('vs_sluice_ttfb_ms'))} | "
                f"{_signed_i(m.get('vs_sluice_cpu_us_per_req_c64'))} |"
            )
    return [*lines, ""]


def _signed_i(value: float | None) -> str:
    return NA if value is None else f"{value:+,.0f}"


def _error_lines(result: dict[str, Any]) -> list[str]:
    """Non-200 answers and socket errors: a number measured on errors is not a number."""
    bad = [
        f"{body['label']} / {_label(result, target)}: {sum(c.get('errors', 0) for c in cells)}"
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
            f" kept cells: median {bg['median']}%, max {bg['max']}% of all cores."
            + (
                f" Rounds discarded and measured again because others used more than"
                f" {limit}%: {bg.get('discarded_rounds', 0)}."
                if (limit := meta["plan"].get("max_background_pct")) is not None
                else " No round was redone (--max-background 100)."
            )
            + f" Idle cores kept awake: {meta.get('keep_awake')}.",
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
    for body in result["bodies"].values():
        b, s = body["summary"].get("budget"), body["summary"].get("sluice", {})
        if b is None:
            continue
        bound = spec["budget_vs_sluice_rps"]
        peak_b = max(b.get("rps_c16") or 0.0, b.get("rps_c64") or 0.0)
        peak_s = max(s.get("rps_c16") or 0.0, s.get("rps_c64") or 0.0)
        value = peak_b / peak_s if peak_b and peak_s else None
        verdict = NA if value is None else ("yes" if value >= bound else "**no**")
        shown = NA if value is None else f"{value:.2f} ({_i(peak_b)} / {_i(peak_s)})"
        lines.append(
            f"| {body['label']}: budgets+rate limit peak req/s (c=16/64) vs Sluice (full) | "
            f">= {bound:.2f} | {shown} | {verdict} |"
        )
    lines += _whole_lines(result)
    for body in result["bodies"].values():
        p = body["summary"].get("policy")
        if p is None:
            continue
        bound, value = spec["policy_vs_sluice_p50"], p.get("vs_sluice_p50_ms")
        verdict = NA if value is None else ("yes" if value <= bound else "**no**")
        lines.append(
            f"| {body['label']}: policy added p50 vs Sluice (full) | <= +{bound:g} | "
            f"{_added(value)} | {verdict} |"
        )
    return lines


def _whole_lines(result: dict[str, Any]) -> list[str]:
    """Issue #12's throughput goal: the whole pipeline on one key against the bare relay, at
    c=16 and at c=64 (each must reach the bound)."""
    bound = TARGETS_SPEC["whole_vs_bare_rps"]
    lines = []
    for body in result["bodies"].values():
        ratios = [body["ratios"].get(f"whole/bare_c{c}") for c in (16, 64)]
        if any(r is None for r in ratios):
            continue
        low = min(r for r in ratios if r is not None)
        shown = " / ".join(_f(r) for r in ratios)
        verdict = "yes" if low >= bound else "**no**"
        lines.append(
            f"| {body['label']}: all on one key / bare relay req/s (c=16 / c=64) | "
            f">= {bound:g} | {shown} | {verdict} |"
        )
    return lines
