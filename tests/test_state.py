"""The base stores: one contract for the stdlib SQLite store and the SQLAlchemy one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from storsync.model import BaseEntry
from storsync.state.migrations import HEAD
from storsync.state.protocol import BaseStore
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.state.store import StateStore

STORES: dict[str, Callable[[Path], BaseStore]] = {
    "sqlite3": SqliteBaseStore,
    "sqlalchemy": lambda path: StateStore(f"sqlite:///{path}"),
}


@pytest.fixture(params=sorted(STORES))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], BaseStore]]:
    opened: list[BaseStore] = []

    def make() -> BaseStore:
        store = STORES[request.param](tmp_path / "state.db")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def entry(size: int, *, h: str | None = "h", inode: int | None = 7) -> BaseEntry:
    return BaseEntry(size, h, False, 10**18 + size, inode, None, 5, None, f"etag{size}")


def test_head_constant_names_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", "storsync.state:migrations")
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_repository_id_is_stable_per_pair(open_store: Callable[[], BaseStore]) -> None:
    store = open_store()
    first = store.repository_id("file:///a", "file:///b", now_ns=1)
    assert store.repository_id("file:///a", "file:///b", now_ns=2) == first
    assert store.repository_id("file:///a", "file:///c", now_ns=3) != first
    assert open_store().repository_id("file:///a", "file:///b", now_ns=4) == first


def test_commit_records_replaces_and_forgets(open_store: Callable[[], BaseStore]) -> None:
    store = open_store()
    repo = store.repository_id("file:///a", "file:///b", now_ns=1)
    other = store.repository_id("file:///a", "file:///c", now_ns=1)
    store.commit_base(repo, [("x", entry(1)), ("d/y", entry(2, h=None, inode=None))], [])
    store.commit_base(other, [("x", entry(9))], [])
    assert store.load_base(repo) == {"x": entry(1), "d/y": entry(2, h=None, inode=None)}
    store.commit_base(repo, [("x", entry(3))], ["d/y", "never-there"])
    assert open_store().load_base(repo) == {"x": entry(3)}
    assert store.load_base(other) == {"x": entry(9)}


def test_large_values_round_trip(open_store: Callable[[], BaseStore]) -> None:
    store = open_store()
    repo = store.repository_id("file:///a", "file:///b", now_ns=1)
    big = BaseEntry(2**62, "f" * 64, True, 2**63 - 1, 2**63 - 1, "e", -(2**62), None, None)
    store.commit_base(repo, [("é/ü", big)], [])
    assert store.load_base(repo) == {"é/ü": big}


def test_a_fresh_file_is_migrated_and_an_upgraded_one_is_not_touched(tmp_path: Path) -> None:
    SqliteBaseStore(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD,)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"repositories", "base", "alembic_version"} <= tables
    StateStore(f"sqlite:///{tmp_path / 's.db'}").close()
