"""Repository names are unique (API.md section 7: 409 on a duplicate): a name given
twice before keeps its oldest repository; the others get " (2)", " (3)", ... (the first
such name no repository had), then a unique index holds it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_unique_names"
down_revision = "0010_bandwidth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, name FROM repositories ORDER BY created_ns, id")).all()
    # Every name keeps its oldest repository; a later one takes the first " (n)" that no
    # repository had, so no name that was unique before changes.
    taken = {name for _, name in rows}
    kept: set[str] = set()
    for repository_id, name in rows:
        if name == "" or name not in kept:
            kept.add(name)
            continue
        n = 2
        while f"{name} ({n})" in taken:
            n += 1
        taken.add(f"{name} ({n})")
        conn.execute(
            sa.text("UPDATE repositories SET name = :name WHERE id = :id"),
            {"name": f"{name} ({n})", "id": repository_id},
        )
    unnamed = sa.text("name != ''")  # the command line's pairs, told apart by their URLs
    op.create_index(
        "ux_repositories_name",
        "repositories",
        ["name"],
        unique=True,
        sqlite_where=unnamed,
        postgresql_where=unnamed,
    )


def downgrade() -> None:
    op.drop_index("ux_repositories_name", table_name="repositories")
