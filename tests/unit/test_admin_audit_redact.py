"""The audit log's last line of defence: no secret survives ``redact``, at any depth."""

from __future__ import annotations

from sluice.store.audit_repo import redact


def test_redact_drops_secrets_and_shortens_webhook_urls() -> None:
    doc = {
        "id": "K",
        "key": "lw_vk_live_secret",
        "key_hash": "ab",
        "previous_key_hash": "cd",
        "nested": [{"token": "sl_adm_x", "token_hash": "ef", "keep": 1}],
        "webhook_url": "https://hooks.slack.com/services/T0/B0/XYZ",
        "webhook_secret": "w",
    }
    assert redact(doc) == {
        "id": "K",
        "nested": [{"keep": 1}],
        "webhook_url": "https://hooks.slack.com/…",
    }
    assert redact({"webhook_url": None}) == {"webhook_url": None}
