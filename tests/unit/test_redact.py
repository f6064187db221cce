"""``redact``: key-shaped strings and credential headers written out as text."""

from __future__ import annotations

import pytest

from sluice.logs import redact


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("x-api-key: plain-token-123", "plain-token-123", "x-api-key: [redacted]"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi", "Authorization: [redacted]"),
        ('{"authorization": "Basic dXNlcjpwdw=="}', "dXNlcjpwdw", '"authorization": "[redacted]'),
        ("api-key=zzz999&x=1", "zzz999", "api-key=[redacted]"),
        ("sent sk-ant-api03-Zx9Qw8Er7Ty6 upstream", "Zx9Qw8Er7Ty6", "sk-ant-api03…[redacted]"),
        (
            "key lw_vk_live_01ABCDEFGHJKMNPQRSTVWXYZ0123 used",
            "GHJKMNPQRSTVWXYZ0123",
            "lw_vk_live_01ABCDE…[redacted]",
        ),
    ],
)
def test_redact(text: str, secret: str, kept: str) -> None:
    out = redact(text)
    assert secret not in out
    assert kept in out


def test_redact_leaves_ordinary_text() -> None:
    text = "Upstream answered HTTP 500: Internal Server Error (authorization required)"
    assert redact(text) == text
