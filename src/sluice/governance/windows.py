"""Budget windows, calendar-aligned in UTC: the day from 00:00, the ISO week from Monday,
the month from the 1st. ``total`` never rolls over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WINDOWS = ("minute", "hour", "day", "week", "month", "total")


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def window_bounds(window: str, now_ms: int) -> tuple[int, int | None]:
    """(start, end) in ms of the window containing ``now_ms``; end None for ``total``."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    if window == "total":
        return 0, None
    if window == "minute":
        start = now.replace(second=0, microsecond=0)
        end = start + timedelta(minutes=1)
    elif window == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
    elif window == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    elif window == "week":
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif window == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown window {window!r}")
    return _ms(start), _ms(end)
