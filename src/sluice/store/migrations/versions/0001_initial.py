"""Initial schema: settings, virtual keys, ledger.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    _settings()
    _virtual_keys()
    _ledger()


def _settings() -> None:
    op.create_table(
        "settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def _virtual_keys() -> None:
    op.create_table(
        "virtual_keys",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("project", sa.String(200)),
        sa.Column("principal", sa.String(200)),
        sa.Column("team", sa.String(200)),
        sa.Column("organization", sa.String(200)),
        sa.Column("environment", sa.String(8), nullable=False),
        sa.Column("display_prefix", sa.String(18), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("previous_key_hash", sa.String(64)),
        sa.Column("previous_valid_until", sa.BigInteger),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("last_used_at", sa.BigInteger),
        sa.Column("config", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_virtual_keys_display_prefix", "virtual_keys", ["display_prefix"])
    op.create_index("ix_virtual_keys_updated_at", "virtual_keys", ["updated_at"])


def _ledger() -> None:
    op.create_table(
        "ledger",
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("vk_id", sa.String(26)),
        sa.Column("principal", sa.String(200)),
        sa.Column("project", sa.String(200)),
        sa.Column("team", sa.String(200)),
        sa.Column("organization", sa.String(200)),
        sa.Column("session_id", sa.String(200)),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(100)),
        sa.Column("model_requested", sa.String(200)),
        sa.Column("model_sent", sa.String(200)),
        sa.Column("streaming", sa.Boolean, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("stop_reason", sa.String(64)),
        sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cache_creation_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cache_creation_5m_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cache_creation_1h_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("upstream_request_id", sa.String(200)),
        sa.Column("upstream_latency_ms", sa.Integer),
        sa.Column("ttft_ms", sa.Integer),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("client_disconnected", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_ledger_created_at", "ledger", ["created_at"])
    op.create_index("ix_ledger_vk_id", "ledger", ["vk_id"])


def downgrade() -> None:
    op.drop_table("ledger")
    op.drop_table("virtual_keys")
    op.drop_table("settings")
