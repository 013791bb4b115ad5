"""The service: repository settings, sessions, log items, users, tokens, events."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_service"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_NEW_REPOSITORY_COLUMNS = (
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("mode", sa.String(16), nullable=False, server_default="two-way"),
    sa.Column("policy", sa.String(16), nullable=False, server_default="keep-both"),
    sa.Column("excludes", sa.Text, nullable=False, server_default="[]"),
    sa.Column("credentials", sa.Text),
    sa.Column("is_default", sa.Boolean, nullable=False, server_default="0"),
    sa.Column("updated_ns", sa.BigInteger),
)


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        for column in _NEW_REPOSITORY_COLUMNS:
            batch.add_column(column)
    counters = [
        sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        for name in (
            "push_files_planned",
            "push_files_done",
            "push_bytes_planned",
            "push_bytes_done",
            "pull_files_planned",
            "pull_files_done",
            "pull_bytes_planned",
            "pull_bytes_done",
            "pushed",
            "pulled",
            "deleted_local",
            "deleted_remote",
            "conflicts",
            "errors",
        )
    ]
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("repository_id", sa.String(36), nullable=False),
        sa.Column("push_id", sa.String(36), nullable=False, unique=True),
        sa.Column("pull_id", sa.String(36), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("push_state", sa.String(16)),
        sa.Column("pull_state", sa.String(16)),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("started_ns", sa.BigInteger),
        sa.Column("ended_ns", sa.BigInteger),
        sa.Column("error", sa.Text),
        sa.Column("stop_requested", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("trigger", sa.String(32), nullable=False, server_default=""),
        sa.Column("percent", sa.Integer, nullable=False, server_default="0"),
        *counters,
    )
    op.create_index("ix_sessions_created", "sessions", ["created_ns", "id"])
    op.create_index(
        "ix_sessions_repository_created", "sessions", ["repository_id", "created_ns", "id"]
    )
    op.create_index("ix_sessions_state", "sessions", ["state"])
    op.create_table(
        "log_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("ts_ns", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("size", sa.BigInteger),
    )
    op.create_index("ix_log_items_session", "log_items", ["session_id", "id"])
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.Text, nullable=False, server_default=""),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("expires_ns", sa.BigInteger),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default="0"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("ts_ns", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("repository_id", sa.String(36)),
        sa.Column("session_id", sa.String(36)),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_events_session", "events", ["session_id", "id"])


def downgrade() -> None:
    for table in ("events", "tokens", "users", "log_items", "sessions"):
        op.drop_table(table)
    with op.batch_alter_table("repositories") as batch:
        for column in reversed(_NEW_REPOSITORY_COLUMNS):
            batch.drop_column(column.name)
