"""Halts instead of failures (API.md section 7): a halted session's reason and outcome,
the session that carries an approval, and the halted plan's steps."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_halts"
down_revision = "0007_schedules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("halt", sa.Text(), nullable=True))
        batch.add_column(sa.Column("halt_outcome", sa.String(16), nullable=True))
        batch.add_column(sa.Column("approves", sa.String(36), nullable=True))
    op.create_table(
        "plan_items",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=True),
        sa.Column("inode", sa.BigInteger(), nullable=True),
        sa.Column("etag", sa.Text(), nullable=True),
    )
    op.create_index("ix_plan_items_session", "plan_items", ["session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_plan_items_session", table_name="plan_items")
    op.drop_table("plan_items")
    with op.batch_alter_table("sessions") as batch:
        for name in ("approves", "halt_outcome", "halt"):
            batch.drop_column(name)
