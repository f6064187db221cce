"""YAML aliases are bounded: a billion-laughs config is refused, fast, with a clear message."""

from __future__ import annotations

import time

import pytest

from sluice.config.loader import MAX_YAML_NODES, ConfigProblems, parse_config

LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]"
        for i in range(8)
    ]
    + ["server: {host: *i}"]
)


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigProblems) as info:
        parse_config(LAUGHS, "laughs.yaml", env={})
    assert time.perf_counter() - started < 2.0
    assert "alias" in str(info.value)
    assert str(MAX_YAML_NODES) in str(info.value)


def test_ordinary_anchors_still_work() -> None:
    text = """
defaults: &d {type: anthropic, api_key: k, models: [m1]}
providers:
  one: *d
  two:
    <<: *d
    models: [m2]
"""
    with pytest.raises(ConfigProblems) as info:  # `defaults` is not a config field ...
        parse_config(text, env={})
    assert [p.path for p in info.value.problems] == ["defaults"]  # ... but the aliases expand
