"""Budget windows are calendar-aligned in UTC and roll over exactly at their boundary."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sluice.governance.windows import window_bounds


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("window", "now", "start", "end"),
    [
        (
            "minute",
            ms(2026, 11, 28, 13, 45, 30),
            ms(2026, 11, 28, 13, 45),
            ms(2026, 11, 28, 13, 46),
        ),
        ("hour", ms(2026, 11, 28, 13, 45, 30), ms(2026, 11, 28, 13), ms(2026, 11, 28, 14)),
        ("day", ms(2026, 11, 28, 23, 59, 59), ms(2026, 11, 28), ms(2026, 11, 29)),
        # 2026-11-28 is a Saturday: its ISO week began on Monday the 23rd.
        ("week", ms(2026, 11, 28, 12), ms(2026, 11, 23), ms(2026, 11, 30)),
        ("week", ms(2026, 11, 30, 0, 0, 0), ms(2026, 11, 30), ms(2026, 12, 7)),
        ("month", ms(2026, 11, 28, 12), ms(2026, 11, 1), ms(2026, 12, 1)),
        ("month", ms(2026, 12, 31, 23, 59, 59), ms(2026, 12, 1), ms(2027, 1, 1)),
        ("month", ms(2028, 2, 29, 12), ms(2028, 2, 1), ms(2028, 3, 1)),
        ("total", ms(2026, 11, 28), 0, None),
    ],
)
def test_bounds(window: str, now: int, start: int, end: int | None) -> None:
    assert window_bounds(window, now) == (start, end)


@pytest.mark.parametrize("window", ["minute", "hour", "day", "week", "month"])
def test_rolls_over_at_the_boundary(window: str) -> None:
    start, end = window_bounds(window, ms(2026, 11, 28, 13, 45, 30))
    assert end is not None
    assert window_bounds(window, end - 1) == (start, end)
    assert window_bounds(window, end)[0] == end
