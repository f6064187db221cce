"""Property: whatever the stream and its chunking, the relayed bytes are exactly the upstream's
prefix up to the first denied tool block, and nothing after it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.config.vk import VirtualKeyConfig
from sluice.core.tool_guard import ToolGuard
from sluice.governance.policy import KeyPolicy
from sluice.streaming.tap import StreamTap
from sluice.testing.scenarios import Reply, TextBlock, ThinkingBlock, ToolUseBlock, stream_events

POLICY = KeyPolicy.compile(
    VirtualKeyConfig.parse(
        {"policy_rules": {"tools": {"deny": ["^Bash$"]}, "mcp": {"deny": ["^github$"]}}}
    )
)
DENIED = {"Bash", "mcp__github__create_issue"}

blocks = st.one_of(
    st.builds(TextBlock, st.text(min_size=1, max_size=40), st.integers(1, 4)),
    st.builds(ThinkingBlock, st.text(min_size=1, max_size=30)),
    st.builds(
        ToolUseBlock,
        st.sampled_from(
            ["Bash", "Read", "Edit", "mcp__github__create_issue", "mcp__slack__post", "BashOutput"]
        ),
        st.dictionaries(st.text(max_size=5), st.text(max_size=20), max_size=3),
        fragment_size=st.integers(1, 9),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(blocks, min_size=1, max_size=6),
    st.lists(st.integers(0, 10**6), max_size=30),
    st.booleans(),
)
def test_relayed_prefix_is_exact(chosen: list[object], cuts: list[int], pings: bool) -> None:
    events = stream_events(Reply(chosen, pings=pings), model="claude-x", n=1)  # type: ignore[arg-type]
    upstream = b"".join(events)
    denied_at = next(
        (
            i
            for i, ev in enumerate(events)
            if ev.startswith(b"event: content_block_start")
            and any(f'"name":"{name}"'.encode() in ev for name in DENIED)
        ),
        None,
    )
    expected = upstream if denied_at is None else b"".join(events[:denied_at])

    guard = ToolGuard(POLICY)
    tap = StreamTap([guard])
    points = sorted({c % (len(upstream) + 1) for c in cuts})
    released = b""
    last = 0
    for p in [*points, len(upstream)]:
        released += tap.feed(upstream[last:p])
        last = p
    released += tap.finish()
    assert released == expected
    assert (tap.verdict is None) == (denied_at is None)
    if tap.verdict is not None:
        assert tap.verdict.code == "tool_not_allowed"
        assert guard.violation is tap.verdict
