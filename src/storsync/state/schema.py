"""The tables, as SQLAlchemy Core metadata; migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()


def _row_id() -> Column[int]:
    """A row number the database gives: 64-bit, as a busy service writes a row per file.
    SQLite's rowid is 64-bit already and must stay the INTEGER PRIMARY KEY that numbers
    rows by itself."""
    return Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


repositories = Table(
    "repositories",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("local_url", Text, nullable=False),
    Column("remote_url", Text, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    # Added by 0002_service; the command line's pairs keep the defaults.
    Column("name", Text, nullable=False, server_default=""),
    Column("description", Text, nullable=False, server_default=""),
    Column("mode", String(16), nullable=False, server_default="two-way"),
    Column("policy", String(16), nullable=False, server_default="keep-both"),
    Column("excludes", Text, nullable=False, server_default="[]"),
    Column("credentials", Text),
    Column("is_default", Boolean, nullable=False, server_default="0"),
    Column("updated_ns", BigInteger),
    # Added by 0006_repository_settings. remote_options: the remote's options that are
    # not secret, as JSON (NULL: a repository made before, whose options may still be
    # sealed with its credentials until the service's next start); transfers NULL: the
    # service's default.
    Column("remote_options", Text),
    Column("checksum", Boolean, nullable=False, server_default="0"),
    Column("max_delete_percent", Float, nullable=False, server_default="50"),
    Column("trash_days", Float, nullable=False, server_default="30"),
    Column("transfers", Integer),
    # Added by 0007_schedules: when it synchronizes by itself (schedule as JSON), and what
    # its sessions did lately (its status without a query).
    Column("schedule", Text),
    Column("schedule_set_ns", BigInteger),
    Column("watch", Boolean, nullable=False, server_default="0"),
    Column("watch_delay_s", Float, nullable=False, server_default="2"),
    Column("paused", Boolean, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("last_success_ns", BigInteger),
    Column("last_failure_ns", BigInteger),
    # Added by 0010_bandwidth: the repository's own bandwidth limit (NULL: none).
    Column("bwlimit_bps", BigInteger),
    # 0011_unique_names: one repository per name (the clients name them by it); the
    # command line's pairs have none ("") and are told apart by their URLs.
    Index(
        "ux_repositories_name",
        "name",
        unique=True,
        sqlite_where=text("name != ''"),
        postgresql_where=text("name != ''"),
    ),
)

# The service's settings changed through the API (0010_bandwidth), by name, as JSON: they
# outlive a restart and win over the configuration's start value.
service_settings = Table(
    "service_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# A halted session's whole plan, step by step (0008_halts): readable through the API, and
# the deletions an approval may carry, each with the version it may delete.
plan_items = Table(
    "plan_items",
    metadata,
    _row_id(),
    Column("session_id", String(36), nullable=False),
    Column("action", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("size", BigInteger),
    Column("mtime_ns", BigInteger),
    Column("inode", BigInteger),
    Column("etag", Text),
    Index("ix_plan_items_session", "session_id", "id"),
)

# Conflicts as objects (0009_conflicts, API.md section 7): one row per conflict a session
# settled, open (both versions kept, a person decides) or resolved (by the policy in force,
# or by a person through a session). Both versions as scanned; the base's fingerprints of
# the path and its copy once both sides held them, which a resolution must still find; the
# decision a waiting or running session carries (``resolving``).
conflicts = Table(
    "conflicts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("repository_id", String(36), nullable=False),
    Column("path", Text, nullable=False),
    Column("copy_path", Text),
    Column("state", String(16), nullable=False),
    Column("policy", String(16), nullable=False),
    Column("found_session_id", String(36), nullable=False),
    Column("found_ns", BigInteger, nullable=False),
    Column("local_size", BigInteger, nullable=False),
    Column("local_mtime_ns", BigInteger, nullable=False),
    Column("local_hash", Text),
    Column("remote_size", BigInteger, nullable=False),
    Column("remote_mtime_ns", BigInteger, nullable=False),
    Column("remote_hash", Text),
    Column("path_print", Text, nullable=False),
    Column("copy_print", Text),
    Column("resolving", String(16)),
    Column("resolving_session_id", String(36)),
    Column("kept", String(16)),
    Column("resolved_by", String(16)),
    Column("resolved_session_id", String(36)),
    Column("resolved_ns", BigInteger),
    Index("ix_conflicts_repository", "repository_id", "state"),
    Index("ix_conflicts_resolving", "resolving_session_id"),
)

# One row per fire of a repository's schedule (0007_schedules): the primary key records a
# fire once whoever tries again (a restart, a second scheduler), and ``session_id`` is the
# session that carries it (NULL until one does: started again at the next start).
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column("repository_id", String(36), primary_key=True),
    Column("fire_ns", BigInteger, primary_key=True),
    Column("recorded_ns", BigInteger, nullable=False),
    Column("session_id", String(36)),
)

# The digest of a repository's remote listing when a remote check last found it equal to
# the base (0012_remote_listings): the next check that gets the same digest knows the
# remote unchanged without reading its keys. Every write to the base deletes the row in
# the same transaction, so a digest never vouches for a base it was not taken against.
remote_listings = Table(
    "remote_listings",
    metadata,
    Column("repository_id", String(36), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("recorded_ns", BigInteger, nullable=False),
)

# Keyed by the path's SHA-256 (storsync.state.keys.path_key; 0003_base_path_key): a path
# may be 4,096 bytes, more than a PostgreSQL btree entry may hold. The path is not indexed.
# On SQLite the table is stored by (repository_id, path) instead, WITHOUT ROWID (0014):
# read in the merge's order without a sort (state.sqlite_base).
base = Table(
    "base",
    metadata,
    Column("repository_id", String(36), primary_key=True),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("hash", String(64)),
    Column("executable", Boolean, nullable=False),
    Column("local_mtime_ns", BigInteger, nullable=False),
    Column("local_inode", BigInteger),
    Column("local_etag", Text),
    Column("remote_mtime_ns", BigInteger, nullable=False),
    Column("remote_inode", BigInteger),
    Column("remote_etag", Text),
    Column("path_key", String(64), primary_key=True),  # last: added by 0003_base_path_key
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("repository_id", String(36), nullable=False),
    Column("push_id", String(36), nullable=False, unique=True),
    Column("pull_id", String(36), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("push_state", String(16)),
    Column("pull_state", String(16)),
    Column("created_ns", BigInteger, nullable=False),
    Column("started_ns", BigInteger),
    Column("ended_ns", BigInteger),
    Column("error", Text),
    Column("stop_requested", Boolean, nullable=False, server_default="0"),
    Column("trigger", String(32), nullable=False, server_default=""),
    Column("percent", Integer, nullable=False, server_default="0"),
    Column("push_files_planned", BigInteger, nullable=False, server_default="0"),
    Column("push_files_done", BigInteger, nullable=False, server_default="0"),
    Column("push_bytes_planned", BigInteger, nullable=False, server_default="0"),
    Column("push_bytes_done", BigInteger, nullable=False, server_default="0"),
    Column("pull_files_planned", BigInteger, nullable=False, server_default="0"),
    Column("pull_files_done", BigInteger, nullable=False, server_default="0"),
    Column("pull_bytes_planned", BigInteger, nullable=False, server_default="0"),
    Column("pull_bytes_done", BigInteger, nullable=False, server_default="0"),
    Column("pushed", BigInteger, nullable=False, server_default="0"),
    Column("pulled", BigInteger, nullable=False, server_default="0"),
    Column("deleted_local", BigInteger, nullable=False, server_default="0"),
    Column("deleted_remote", BigInteger, nullable=False, server_default="0"),
    Column("conflicts", BigInteger, nullable=False, server_default="0"),
    Column("errors", BigInteger, nullable=False, server_default="0"),
    # Added by 0008_halts: why a halted session halted (JSON: reason, counts, sample),
    # what became of its halt (approved, rejected), and the halted session whose listed
    # deletions this session carries.
    Column("halt", Text),
    Column("halt_outcome", String(16)),
    Column("approves", String(36)),
    # Added by 0013_session_moves: files moved on each side as the other side moved them.
    Column("moved_local", BigInteger, nullable=False, server_default="0"),
    Column("moved_remote", BigInteger, nullable=False, server_default="0"),
    Index("ix_sessions_created", "created_ns", "id"),
    Index("ix_sessions_repository_created", "repository_id", "created_ns", "id"),
    Index("ix_sessions_state", "state"),
)

log_items = Table(
    "log_items",
    metadata,
    _row_id(),
    Column("session_id", String(36), nullable=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("message", Text),
    Column("size", BigInteger),
    Index("ix_log_items_session", "session_id", "id"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("label", Text, nullable=False, server_default=""),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger),
    Column("revoked", Boolean, nullable=False, server_default="0"),
    # The password sign-in an access or refresh token belongs to: revoking one of them
    # ends it all (0005_token_sign_ins). None for API keys.
    Column("sign_in", String(32)),
    Index("ix_tokens_sign_in", "sign_in"),
)

events = Table(
    "events",
    metadata,
    # Given by the service's one event writer, so ids have no gaps (API.md section 6).
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("repository_id", String(36)),
    Column("session_id", String(36)),
    Column("data", Text, nullable=False),
    Index("ix_events_session", "session_id", "id"),
)
