"""On SQLite, the base stored in path order: a ``WITHOUT ROWID`` table whose primary key
is (repository_id, path), so that a session reads a repository's base in the order it
merges in without a sort, from consecutive pages (docs/decisions.md "The base in path
order on SQLite"). PostgreSQL keeps the key on the path's hash (a path may be longer than
its index entries may hold): nothing changes there.
"""

from __future__ import annotations

from alembic import op

revision = "0014_base_in_path_order"
down_revision = "0013_session_moves"
branch_labels = None
depends_on = None

_COLUMNS = """
	repository_id VARCHAR(36) NOT NULL,
	path TEXT NOT NULL,
	size BIGINT NOT NULL,
	hash VARCHAR(64),
	executable BOOLEAN NOT NULL,
	local_mtime_ns BIGINT NOT NULL,
	local_inode BIGINT,
	local_etag TEXT,
	remote_mtime_ns BIGINT NOT NULL,
	remote_inode BIGINT,
	remote_etag TEXT,
	path_key VARCHAR(64) NOT NULL,"""
_NAMES = (
    "repository_id, path, size, hash, executable, local_mtime_ns, local_inode, local_etag, "
    "remote_mtime_ns, remote_inode, remote_etag, path_key"
)


def _rebuild(key: str, without_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    suffix = " WITHOUT ROWID" if without_rowid else ""
    op.execute(
        f"CREATE TABLE base_rebuilt ({_COLUMNS}\n\tCONSTRAINT base_pkey PRIMARY KEY "
        f"(repository_id, {key})\n){suffix}"
    )
    op.execute(f"INSERT INTO base_rebuilt ({_NAMES}) SELECT {_NAMES} FROM base")
    op.execute("DROP TABLE base")
    op.execute("ALTER TABLE base_rebuilt RENAME TO base")


def upgrade() -> None:
    _rebuild("path", without_rowid=True)


def downgrade() -> None:
    _rebuild("path_key", without_rowid=False)
