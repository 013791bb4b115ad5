"""The files a session moved on each side, as the other side had moved them
(engine/moves.py): counted like its transfers and deletions."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_session_moves"
down_revision = "0012_remote_listings"
branch_labels = None
depends_on = None

COLUMNS = ("moved_local", "moved_remote")


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
