"""Access and refresh tokens name the password sign-in they belong to, so that revoking
one of them (RFC 7009, ``POST /api/v1/auth/revoke``) can end the whole sign-in. Tokens
issued before have none and are revoked one at a time."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_token_sign_ins"
down_revision = "0004_log_item_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("sign_in", sa.String(32), nullable=True))
    op.create_index("ix_tokens_sign_in", "tokens", ["sign_in"])


def downgrade() -> None:
    op.drop_index("ix_tokens_sign_in", table_name="tokens")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("sign_in")
