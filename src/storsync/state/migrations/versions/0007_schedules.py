"""Repositories left running: a schedule, watching, pause (API.md section 7), what their
sessions did lately, and one row per fire of a schedule."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_schedules"
down_revision = "0006_repository_settings"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("schedule", sa.Text(), None),
    ("schedule_set_ns", sa.BigInteger(), None),
    ("watch", sa.Boolean(), "0"),
    ("watch_delay_s", sa.Float(), "2"),
    ("paused", sa.Boolean(), "0"),
    ("failures", sa.Integer(), "0"),
    ("last_success_ns", sa.BigInteger(), None),
    ("last_failure_ns", sa.BigInteger(), None),
)


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        for name, kind, default in _COLUMNS:
            batch.add_column(
                sa.Column(name, kind, nullable=default is None, server_default=default)
            )
    op.create_table(
        "schedule_fires",
        sa.Column("repository_id", sa.String(36), primary_key=True),
        sa.Column("fire_ns", sa.BigInteger(), primary_key=True),
        sa.Column("recorded_ns", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("schedule_fires")
    with op.batch_alter_table("repositories") as batch:
        for name, _, _ in reversed(_COLUMNS):
            batch.drop_column(name)
