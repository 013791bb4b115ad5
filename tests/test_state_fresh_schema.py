"""The stdlib store's direct creation of a fresh file matches what Alembic's migrations make."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from storsync.state.migrate import upgrade_url
from storsync.state.migrations import HEAD
from storsync.state.sqlite_base import _FRESH_REVISION, _FRESH_SCHEMA_FILE, SqliteBaseStore


def _schema(path: Path) -> tuple[list[tuple[str, str, str | None]], list[tuple[str]]]:
    with sqlite3.connect(path) as conn:
        objects = conn.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    return objects, version


def test_fresh_file_gets_exactly_the_migrated_schema(tmp_path: Path) -> None:
    SqliteBaseStore(tmp_path / "fast.db").close()
    upgrade_url(f"sqlite:///{tmp_path / 'alembic.db'}")
    assert _schema(tmp_path / "fast.db") == _schema(tmp_path / "alembic.db")
    assert _schema(tmp_path / "fast.db")[1] == [(HEAD,)]


def test_fresh_schema_script_is_the_current_head() -> None:
    # When a migration is added, HEAD moves on and the store falls back to Alembic for new
    # files (still correct, only slower); then run this module with STORSYNC_REGENERATE=1
    # and move _FRESH_REVISION to the new HEAD.
    assert _FRESH_REVISION == HEAD


def test_fresh_schema_file_is_what_alembic_writes(tmp_path: Path) -> None:
    upgrade_url(f"sqlite:///{tmp_path / 'alembic.db'}")
    with sqlite3.connect(tmp_path / "alembic.db") as conn:
        statements = [
            sql
            for (sql,) in conn.execute("SELECT sql FROM sqlite_master ORDER BY rowid")
            if sql is not None
        ]
    expected = "".join(f"{sql};\n\n" for sql in statements)
    if os.environ.get("STORSYNC_REGENERATE") == "1":
        _FRESH_SCHEMA_FILE.write_text(expected)
    assert _FRESH_SCHEMA_FILE.read_text() == expected


def test_a_file_with_tables_is_left_to_alembic(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    SqliteBaseStore(path).close()
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"unrelated", "alembic_version", "repositories", "base"} <= names
