"""Server-side SVG: horizontal bar charts and budget bars.

Hand-written rather than pygal: two shapes are needed, each a few dozen lines, and this keeps
the console's only new dependency Jinja2. The SVG scales with its container (viewBox,
width 100%), so a chart fits 375 px and 1280 px alike, and it is in the page's first byte:
no script draws it, so nothing shifts while data loads. Colours come from the stylesheet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

ROW_H = 26
LABEL_W = 150
WIDTH = 600


def _svg(height: int, label: str, body: str) -> Markup:
    # Safe: every text in ``body`` and ``label`` went through escape(); the rest are numbers.
    return Markup(  # noqa: S704
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" height="{height}" '
        f'role="img" aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(label)}</title>{body}</svg>"
    )


def bars(
    items: Sequence[tuple[str, float]], label: str, fmt: Callable[[float], str] = str
) -> Markup:
    """One bar per (name, value), longest first as given; values printed beside the bars."""
    if not items:
        return Markup('<p class="empty">No data in this period.</p>')
    top = max(value for _, value in items) or 1.0
    span = WIDTH - LABEL_W - 110
    rows = []
    for i, (name, value) in enumerate(items):
        y = i * ROW_H
        w = max(1.0, span * value / top) if value > 0 else 0.0
        short = name if len(name) <= 22 else name[:21] + "…"
        rows.append(
            f"<g><title>{escape(name)}: {escape(fmt(value))}</title>"
            f'<text class="lbl" x="{LABEL_W - 6}" y="{y + 17}" text-anchor="end">'
            f"{escape(short)}</text>"
            f'<rect class="bar" x="{LABEL_W}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}"/>'
            f'<text class="val" x="{LABEL_W + w + 6:.1f}" y="{y + 17}">{escape(fmt(value))}'
            "</text></g>"
        )
    return _svg(len(items) * ROW_H + 4, label, "".join(rows))


def budget_bar(spent: float, reserved: float | None, limit: float, label: str) -> Markup:
    """Spent (solid) then reserved (hatched) against the limit; past it, the bar is full."""

    def width(value: float) -> float:
        return max(0.0, min(WIDTH, WIDTH * value / limit)) if limit > 0 else 0.0

    w_spent = width(spent)
    w_reserved = min(WIDTH - w_spent, width(reserved or 0.0))
    over = " over" if spent >= limit else ""
    body = (
        f'<rect class="track" x="0" y="0" width="{WIDTH}" height="18" rx="4"/>'
        f'<rect class="spent{over}" x="0" y="0" width="{w_spent:.1f}" height="18" rx="4"/>'
        f'<rect class="reserved" x="{w_spent:.1f}" y="0" width="{w_reserved:.1f}" height="18"/>'
    )
    return _svg(18, label, body)
