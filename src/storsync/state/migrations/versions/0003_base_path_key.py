"""The base is keyed by (repository_id, path_key): a path's SHA-256, not the path itself.

A path may be 4,096 bytes of UTF-8 (storsync.paths); a btree entry on PostgreSQL
may not exceed 2,704 bytes, so a primary key on the path itself refused long, hard to
compress paths and with them the whole batch's commit. ``path_key`` is the lowercase hex
SHA-256 of the path's UTF-8 bytes, computed by the stores in Python (SQLite has no
sha256), and so here for the rows already recorded, a batch at a time. ``path`` stays,
a plain column.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0003_base_path_key"
down_revision = "0002_service"
branch_labels = None
depends_on = None

_BATCH = 5000

# The table as this revision sees it, independent of storsync.state.schema.
_base = sa.table(
    "base",
    sa.column("repository_id", sa.String(36)),
    sa.column("path", sa.Text),
    sa.column("path_key", sa.String(64)),
)


def _path_key(path: str) -> str:
    # The definition the stores use (storsync.state.keys.path_key), frozen here.
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


def _fill_path_keys(conn: sa.Connection) -> None:
    """Give every row its key, a page at a time in the order of the old primary key."""
    key = sa.tuple_(_base.c.repository_id, _base.c.path)
    page = (
        sa.select(_base.c.repository_id, _base.c.path)
        .order_by(_base.c.repository_id, _base.c.path)
        .limit(_BATCH)
    )
    update = (
        sa.update(_base)
        .where(_base.c.repository_id == sa.bindparam("r"), _base.c.path == sa.bindparam("p"))
        .values(path_key=sa.bindparam("k"))
    )
    after: tuple[str, str] | None = None
    while True:
        query = page if after is None else page.where(key > sa.tuple_(*after))
        rows = conn.execute(query).all()
        if not rows:
            return
        conn.execute(update, [{"r": r, "p": p, "k": _path_key(p)} for r, p in rows])
        after = (rows[-1][0], rows[-1][1])


# PostgreSQL named the old primary key "base_pkey"; SQLite's has no name, and batch mode,
# which recreates the table there, reflects it under this convention so it can be dropped.
_PK = "base_pkey"
_NAMING = {"pk": _PK}


def upgrade() -> None:
    with op.batch_alter_table("base") as batch:
        batch.add_column(sa.Column("path_key", sa.String(64), nullable=True))
    _fill_path_keys(op.get_bind())
    with op.batch_alter_table("base", naming_convention=_NAMING) as batch:
        batch.drop_constraint(_PK, type_="primary")
        batch.alter_column("path_key", existing_type=sa.String(64), nullable=False)
        batch.create_primary_key(_PK, ["repository_id", "path_key"])


def downgrade() -> None:
    # Fails on PostgreSQL when a recorded path is too long for the old key's index.
    with op.batch_alter_table("base", naming_convention=_NAMING) as batch:
        batch.drop_constraint(_PK, type_="primary")
        batch.drop_column("path_key")
        batch.create_primary_key(_PK, ["repository_id", "path"])
