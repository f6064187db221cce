"""The local trace store: one row per span.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trace_spans",
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("span_id", sa.String(16), primary_key=True),
        sa.Column("parent_span_id", sa.String(16)),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("session_id", sa.String(200)),
        sa.Column("vk_id", sa.String(26)),
        sa.Column("project", sa.String(200)),
        sa.Column("agent", sa.String(200)),
        sa.Column("request_id", sa.String(40)),
        sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost_micros", sa.BigInteger),
        sa.Column("error", sa.String(200)),
        sa.Column("attributes", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_trace_spans_created_at", "trace_spans", ["created_at"])
    op.create_index("ix_trace_spans_session_id", "trace_spans", ["session_id"])
    op.create_index("ix_trace_spans_vk_id", "trace_spans", ["vk_id"])


def downgrade() -> None:
    op.drop_table("trace_spans")
