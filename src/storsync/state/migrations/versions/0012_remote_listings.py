"""The digest of a repository's remote listing as last found equal to the base: a remote
check that lists the same pages again reads none of their keys (schema.remote_listings)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_remote_listings"
down_revision = "0011_unique_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remote_listings",
        sa.Column("repository_id", sa.String(36), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("recorded_ns", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("remote_listings")
