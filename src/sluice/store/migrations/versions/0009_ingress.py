"""The door each request came in by: Anthropic Messages, Bedrock, Vertex or OpenAI Chat.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(
            sa.Column("ingress", sa.String(16), nullable=False, server_default="anthropic")
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("ingress")
