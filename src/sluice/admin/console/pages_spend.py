"""Spend: cost by day, principal, model and request class, and the cache-read share."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sluice.admin.console import charts, inproc
from sluice.admin.console.common import page, signed_in

router = APIRouter()
GROUPS = (("day", "Cost by day"), ("principal", "Cost by principal"),
          ("model", "Cost by model"), ("request_class", "Cost by request class"))  # fmt: skip


def _usd(value: float) -> str:
    return f"${value:,.4f}"


def cache_share(rows: list[dict[str, Any]]) -> float | None:
    """Cache reads as a share of all input tokens (uncached + cache reads + cache writes):
    the number Claude Code teams watch. None with no input at all."""
    read = sum(int(r["cache_read_tokens"]) for r in rows)
    total = read + sum(int(r["input_tokens"]) + int(r["cache_creation_tokens"]) for r in rows)
    return read / total if total else None


@router.get("/spend")
async def spend_page(request: Request) -> Response:
    session = await signed_in(request)
    period = {k: request.query_params.get(k, "") for k in ("from", "to")}
    charts_out = []
    share = None
    totals = {"requests": 0, "cost_usd": 0.0}
    for group, title in GROUPS:
        answer = await inproc.call(request, "GET", "/spend", query={"group_by": group, **period})
        if not answer.ok:
            return page(request, "error.html", session, answer.status, message=answer.error)
        rows = answer.body["data"]
        items = [(str(r[group] if r[group] is not None else "(none)"), r["cost_usd"]) for r in rows]
        if group == "day":
            items.sort()
            share = cache_share(rows)
            totals = {"requests": sum(r["requests"] for r in rows),
                      "cost_usd": sum(r["cost_usd"] for r in rows)}  # fmt: skip
        else:
            items.sort(key=lambda item: -item[1])
        charts_out.append((title, charts.bars(items[:15], title, _usd), rows, group))
    return page(
        request, "spend.html", session, charts=charts_out, share=share, totals=totals,
        period=period,
    )  # fmt: skip
