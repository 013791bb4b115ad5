"""Every sync setting of the command line on a repository (checksum, the delete guard's
limit, trash retention, transfers), and the remote's options that are not secret (an S3
endpoint and region) in the clear, apart from its sealed credentials."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_repository_settings"
down_revision = "0005_token_sign_ins"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("remote_options", sa.Text(), nullable=True))
        batch.add_column(sa.Column("checksum", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("max_delete_percent", sa.Float(), nullable=False, server_default="50")
        )
        batch.add_column(sa.Column("trash_days", sa.Float(), nullable=False, server_default="30"))
        batch.add_column(sa.Column("transfers", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        for name in ("transfers", "trash_days", "max_delete_percent", "checksum", "remote_options"):
            batch.drop_column(name)
