"""Repositories and their base."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repositories",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("local_url", sa.Text, nullable=False),
        sa.Column("remote_url", sa.Text, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "base",
        sa.Column("repository_id", sa.String(36), primary_key=True),
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64)),
        sa.Column("executable", sa.Boolean, nullable=False),
        sa.Column("local_mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("local_inode", sa.BigInteger),
        sa.Column("local_etag", sa.Text),
        sa.Column("remote_mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("remote_inode", sa.BigInteger),
        sa.Column("remote_etag", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("base")
    op.drop_table("repositories")
