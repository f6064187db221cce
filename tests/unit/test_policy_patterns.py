"""Policy patterns run on RE2: linear time, refused on save when RE2 cannot compile them."""

from __future__ import annotations

import time

import pytest

from sluice.base.patterns import MAX_MATCHED_CHARS
from sluice.config.loader import ConfigProblems
from sluice.config.vk import VirtualKeyConfig
from sluice.governance.policy import KeyPolicy


def compile_rules(**rules: object) -> KeyPolicy:
    return KeyPolicy.compile(VirtualKeyConfig.parse({"policy_rules": rules}))


@pytest.mark.parametrize(
    ("pattern", "why"),
    [("(a)\\1", "\\1"), ("^(?=Bash)", "(?="), ("(?<!x)y", "(?<"), ("[", "missing")],
)
def test_patterns_re2_cannot_compile_are_refused_on_save(pattern: str, why: str) -> None:
    with pytest.raises(ConfigProblems) as info:
        VirtualKeyConfig.parse({"policy_rules": {"tools": {"deny": ["ok", pattern]}}})
    (problem,) = info.value.problems
    assert problem.path == "policy_rules.tools.deny"
    assert repr(pattern) in problem.message
    assert why in problem.message


def test_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    policy = compile_rules(models={"deny": ["(a+)+$"]})
    started = time.perf_counter()
    assert policy.models.violation("a" * 40 + "!") is None
    assert policy.models.violation("a" * 40) is not None
    assert time.perf_counter() - started < 0.1


def test_unanchored_search_semantics_are_kept() -> None:
    policy = compile_rules(tools={"deny": ["^Bash$", "Web"]})
    assert policy.tool_violation("Bash") is not None
    assert policy.tool_violation("BashX") is None
    assert policy.tool_violation("mcp__WebSearch") is not None
    assert policy.tool_violation("Read") is None
    assert compile_rules(tools={"deny": ["é"]}).tool_violation("café") is not None


def test_values_over_the_cap_are_refused_when_the_dimension_is_active() -> None:
    policy = compile_rules(tools={"deny": ["^Bash$"]}, urls={"allow": ["example"]})
    long_name = "X" * (MAX_MATCHED_CHARS["tools"] + 1)
    reason = policy.tool_violation(long_name)
    assert reason is not None and "longer than" in reason
    assert policy.tool_violation("X" * MAX_MATCHED_CHARS["tools"]) is None
    long_url = "https://example.com/" + "p" * MAX_MATCHED_CHARS["urls"]
    assert policy.urls.violation(long_url) is not None
    # an inactive dimension judges nothing, however long
    assert compile_rules().tool_violation(long_name) is None
