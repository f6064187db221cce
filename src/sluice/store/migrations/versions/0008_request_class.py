"""What kind of Claude Code call each request was, and which agent made it (gateway hints).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("request_class", sa.String(32), nullable=True))
        batch.add_column(sa.Column("agent_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("parent_agent_id", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("parent_agent_id")
        batch.drop_column("agent_id")
        batch.drop_column("request_class")
