"""Key format, hashing, and the per-key config document."""

from __future__ import annotations

import pytest

from sluice.config.loader import ConfigProblems
from sluice.config.vk import VirtualKeyConfig, set_path
from sluice.governance import vk_format


def test_mint_and_parse() -> None:
    key_id = vk_format.new_key_id()
    live = vk_format.mint_key(key_id)
    test = vk_format.mint_key(key_id, test=True)
    assert live.startswith("lw_vk_live_") and test.startswith("lw_vk_test_")
    assert len(live) == 11 + 26 + vk_format.SECRET_LEN
    assert vk_format.parse_key(live) == vk_format.ParsedKey("live", key_id)
    assert vk_format.parse_key(test) == vk_format.ParsedKey("test", key_id)
    assert vk_format.display_prefix(live) == "lw_vk_live_" + key_id[-7:]
    assert vk_format.display_prefix(test) == "lw_vk_test_" + key_id[-7:]
    assert vk_format.mint_key(key_id) != live  # a fresh secret each time


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lw_vk_live_",
        "lw_vk_prod_01ARZ3NDEKTSV4RRFFQ69G5FAVabcdefghijklmnopqrstuvwx",
        "lw_vk_live_01ARZ3NDEKTSV4RRFFQ69G5FAVshort",
        "sk-ant-api03-xyz",
        "lw_vk_live_01ARZ3NDEKTSV4RRFFQ69G5FAV" + "a" * 23 + "!",
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    assert vk_format.parse_key(text) is None


def test_hash_is_keyed() -> None:
    key = vk_format.mint_key(vk_format.new_key_id())
    h1 = vk_format.hash_key(b"one", key)
    assert h1 == vk_format.hash_key(b"one", key)
    assert h1 != vk_format.hash_key(b"two", key)
    assert vk_format.hashes_match(h1, h1) and not vk_format.hashes_match(h1, "0" * 64)


def test_the_keyed_hasher_is_hash_key_every_time() -> None:
    """It reuses one keyed state: a call must never see an earlier call's bytes."""
    hasher = vk_format.KeyHasher(b"one")
    keys = [vk_format.mint_key(vk_format.new_key_id()) for _ in range(3)]
    for key in [*keys, *keys]:
        assert hasher(key) == vk_format.hash_key(b"one", key)
    assert vk_format.KeyHasher(b"two")(keys[0]) != hasher(keys[0])


def test_vk_config_defaults_and_document() -> None:
    cfg = VirtualKeyConfig()
    assert cfg.policy_rules.tools.mode == "block_calls"
    assert cfg.cache.mode == "respect"
    assert cfg.fallback.on == ["5xx", "timeout", "rate_limit", "network"]
    assert cfg.to_document() == {}
    doc = set_path({}, "policy_rules.tools.deny", ["^Bash$"])
    doc = set_path(doc, "rate_limits.rpm", 10)
    parsed = VirtualKeyConfig.parse(doc)
    assert parsed.policy_rules.tools.deny == ["^Bash$"]
    assert parsed.to_document() == {
        "policy_rules": {"tools": {"deny": ["^Bash$"]}},
        "rate_limits": {"rpm": 10},
    }


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"policy_rules": {"tools": {"deny": ["(bad"]}}}, "policy_rules.tools.deny"),
        ({"policy_rules": {"tools": {"mode": "maybe"}}}, "policy_rules.tools.mode"),
        ({"cache": {"mode": "force"}}, "cache.mode"),
        ({"rate_limits": {"rpm": 0}}, "rate_limits.rpm"),
        ({"fallback": {"on": ["sometimes"]}}, "fallback.on.0"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_vk_config_refuses_bad_documents(doc: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigProblems) as info:
        VirtualKeyConfig.parse(doc)
    assert any(p.path == path for p in info.value.problems), info.value.problems


def test_null_means_not_set() -> None:
    parsed = VirtualKeyConfig.parse({"rate_limits": None, "fallback": {"max_attempts": None}})
    assert parsed == VirtualKeyConfig()
    doc = {"rate_limits": {"rpm": 1, "tpm": 2}}
    assert set_path(doc, "rate_limits.rpm", None) == {"rate_limits": {"tpm": 2}}
    assert set_path(doc, "rate_limits", None) == {}
