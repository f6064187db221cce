"""Budgets, and the amount each ledger row counts against them.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("window", sa.String(10), nullable=False),
        sa.Column("limit_micros", sa.BigInteger, nullable=False),
        sa.Column("on_breach", sa.String(10), nullable=False),
        sa.Column("webhook_url", sa.Text),
        sa.Column("webhook_format", sa.String(10), nullable=False, server_default="json"),
        sa.Column("reset_at", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_budgets_scope_target", "budgets", ["scope", "target"])
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("budget_micros", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("budget_micros")
    op.drop_table("budgets")
