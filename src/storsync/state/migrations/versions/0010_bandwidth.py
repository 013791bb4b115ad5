"""Bandwidth limits (API.md section 7): a repository's own, and the service's settings
changed through the API (its total limit), kept across restarts."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_bandwidth"
down_revision = "0009_conflicts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("bwlimit_bps", sa.BigInteger(), nullable=True))
    op.create_table(
        "service_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_settings")
    with op.batch_alter_table("repositories") as batch:
        batch.drop_column("bwlimit_bps")
