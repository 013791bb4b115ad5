"""Log item ids are 64-bit: a busy service writes one row per file it transfers, and
PostgreSQL's ``serial`` would run out after 2**31 of them. SQLite's rowid is 64-bit
already, so nothing changes there."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_log_item_ids"
down_revision = "0003_base_path_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        return
    op.alter_column(
        "log_items", "id", type_=sa.BigInteger(), existing_type=sa.Integer(), nullable=False
    )
    if dialect == "postgresql":
        op.execute("ALTER SEQUENCE IF EXISTS log_items_id_seq AS bigint")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        return
    if dialect == "postgresql":
        op.execute("ALTER SEQUENCE IF EXISTS log_items_id_seq AS integer")
    op.alter_column(
        "log_items", "id", type_=sa.Integer(), existing_type=sa.BigInteger(), nullable=False
    )
