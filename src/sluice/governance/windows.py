"""Budget windows, calendar-aligned in UTC: the day from 00:00, the ISO week from Monday,
the month from the 1st. ``total`` never rolls over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WINDOWS = ("minute", "hour", "day", "week", "month", "total")


_FIXED_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def window_bounds(window: str, now_ms: int) -> tuple[int, int | None]:
    """(start, end) in ms of the window containing ``now_ms``; end None for ``total``."""
    # UTC has no DST, and epoch time has no leap seconds, so the fixed-length windows are
    # plain arithmetic (this runs several times per request).
    fixed = _FIXED_MS.get(window)
    if fixed is not None:
        start_ms = now_ms - now_ms % fixed
        return start_ms, start_ms + fixed
    if window == "total":
        return 0, None
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    if window == "week":
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif window == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown window {window!r}")
    return _ms(start), _ms(end)
