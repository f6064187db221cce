"""The sampler that bounds access-log lines for requests with no valid key."""

from __future__ import annotations

from sluice.telemetry.access_log import LogSampler


def test_at_most_n_lines_a_second_and_the_next_says_how_many_were_held_back() -> None:
    now = [100.0]
    sampler = LogSampler(3, now=lambda: now[0])
    assert [sampler.admit() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 100.9  # the same second
    assert sampler.admit() is None
    now[0] = 101.0
    assert [sampler.admit() for _ in range(4)] == [3, 0, 0, None]
    assert LogSampler(0, now=lambda: 0.0).admit() is None  # 0: none at all
