"""Conflicts as objects (API.md section 7): each conflict a session settled, open or
resolved, with both versions, the fingerprints a resolution must still find, and the
decision a session carries."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_conflicts"
down_revision = "0008_halts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conflicts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("repository_id", sa.String(36), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("copy_path", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("found_session_id", sa.String(36), nullable=False),
        sa.Column("found_ns", sa.BigInteger(), nullable=False),
        sa.Column("local_size", sa.BigInteger(), nullable=False),
        sa.Column("local_mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("local_hash", sa.Text(), nullable=True),
        sa.Column("remote_size", sa.BigInteger(), nullable=False),
        sa.Column("remote_mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("remote_hash", sa.Text(), nullable=True),
        sa.Column("path_print", sa.Text(), nullable=False),
        sa.Column("copy_print", sa.Text(), nullable=True),
        sa.Column("resolving", sa.String(16), nullable=True),
        sa.Column("resolving_session_id", sa.String(36), nullable=True),
        sa.Column("kept", sa.String(16), nullable=True),
        sa.Column("resolved_by", sa.String(16), nullable=True),
        sa.Column("resolved_session_id", sa.String(36), nullable=True),
        sa.Column("resolved_ns", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_conflicts_repository", "conflicts", ["repository_id", "state"])
    op.create_index("ix_conflicts_resolving", "conflicts", ["resolving_session_id"])


def downgrade() -> None:
    op.drop_index("ix_conflicts_resolving", table_name="conflicts")
    op.drop_index("ix_conflicts_repository", table_name="conflicts")
    op.drop_table("conflicts")
