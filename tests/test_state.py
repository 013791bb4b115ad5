"""The base stores: one contract for the stdlib SQLite store and the SQLAlchemy one.

The SQLAlchemy store runs it on SQLite and on a real PostgreSQL (tests/pg_server.py), each
test on a fresh database that Alembic's migrations bring to the newest schema.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storsync.clock import SystemClock
from storsync.model import BaseEntry, Entry, LogKind, PlanAction, PlanItem
from storsync.paths import MAX_NAME_BYTES, MAX_PATH_BYTES, refusal
from storsync.state import migrate, schema
from storsync.state.catalog import Catalog
from storsync.state.migrations import HEAD
from storsync.state.protocol import BASE_COLUMNS, BaseStore
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.state.store import StateStore

STORES = ("sqlite3", "sqlalchemy-sqlite", "sqlalchemy-postgresql")
SQLALCHEMY_BACKENDS = ("sqlite", "postgresql")


def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of ``backend``; PostgreSQL is only started when asked for."""
    if backend == "postgresql":
        return str(request.getfixturevalue("fresh_postgres_url"))
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=STORES)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], BaseStore]]:
    """Opens the store under test again and again on one fresh database."""
    kind = str(request.param)
    url = None if kind == "sqlite3" else database_url(kind.split("-")[1], request, tmp_path)
    opened: list[BaseStore] = []

    def make() -> BaseStore:
        store = SqliteBaseStore(tmp_path / "state.db") if url is None else StateStore(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture(params=SQLALCHEMY_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database for the SQLAlchemy store: SQLite, then PostgreSQL."""
    return database_url(str(request.param), request, tmp_path)


# The base as revisions 0001 and 0002 left it, keyed by (repository_id, path).
OLD_BASE = sa.table("base", *(sa.column(n) for n in ("repository_id", "path", *BASE_COLUMNS)))


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "storsync.state:migrations")
    return config


def entry(size: int, *, h: str | None = "h", inode: int | None = 7) -> BaseEntry:
    return BaseEntry(size, h, False, 10**18 + size, inode, None, 5, None, f"etag{size}")


def test_head_constant_names_the_newest_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


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


def test_hostile_paths_are_distinct_keys(open_store: Callable[[], BaseStore]) -> None:
    store = open_store()
    repo = store.repository_id("file:///a", "file:///b", now_ns=1)
    paths = [
        "a",
        "A",  # case matters
        "a ",  # trailing space
        "caf\u00e9",  # NFC ...
        "cafe\u0301",  # ... and NFD are two names to the store (the engine normalizes)
        'it\'s/"q"/100%/_x_/back\\slash/;DROP TABLE base;--',
        "\U0001f600/\u4e2d\u6587/\u0410",
        "dir/sub/file.txt",
        "dir",
    ]
    store.commit_base(repo, [(p, entry(i)) for i, p in enumerate(paths)], [])
    assert store.load_base(repo) == {p: entry(i) for i, p in enumerate(paths)}
    store.commit_base(repo, [], ["A", "cafe\u0301", "dir"])
    assert sorted(open_store().load_base(repo)) == sorted(set(paths) - {"A", "cafe\u0301", "dir"})


def test_the_base_under_some_paths_is_read_alone(open_store: Callable[[], BaseStore]) -> None:
    """A session of a few paths reads the base at them and under them, byte-wise (``d-``
    and ``d0`` sort between ``d`` and ``d/`` in some collations, not in bytes), and
    counts the whole base for its deletion guard."""
    store = open_store()
    repo = store.repository_id("file:///a", "file:///b", now_ns=1)
    other = store.repository_id("file:///a", "file:///c", now_ns=1)
    paths = ["d", "d-x", "d0", "d/a", "d/sub/b", "dé/c", "e/f", "e/g", "é/h", "x%/_y"]
    store.commit_base(repo, [(p, entry(i)) for i, p in enumerate(paths)], [])
    store.commit_base(other, [("d/a", entry(99))], [])
    got = store.load_base_under(repo, ["d", "e/f", "é", "x%", "missing"])
    assert sorted(got) == sorted(["d", "d/a", "d/sub/b", "e/f", "é/h", "x%/_y"])
    assert got["d/a"] == entry(3)
    many = [f"n{i}" for i in range(450)] + ["e"]  # more than one statement's worth
    assert sorted(open_store().load_base_under(repo, many)) == ["e/f", "e/g"]
    assert store.load_base_under(repo, []) == {}
    assert (store.base_count(repo), store.base_count(other), store.base_count("none")) == (10, 1, 0)
    in_order = sorted(paths, key=lambda p: p.encode())
    assert store.base_every(repo, 3) == in_order[2::3]  # where a remote listing is cut
    assert (store.base_every(repo, 11), store.base_every(other, 1)) == ([], ["d/a"])


def test_a_halted_plans_deletions_are_read_back_a_side_at_a_time_in_plan_order(
    open_store: Callable[[], BaseStore],
) -> None:
    """What an approval reads beside its own plan: one side's deletions, in the order the
    plan listed them (more than one read's thousand), each with its version; the plan
    recorded from a generator, as a halt gives it."""
    store = open_store()

    def deletion(action: PlanAction, i: int) -> PlanItem:
        return PlanItem(action, f"d{i:05}/f", Entry(i, 7 * i, False, i + 1, f"e{i}"))

    remote = [deletion(PlanAction.DELETE_REMOTE, i) for i in range(2_345)]
    local = [deletion(PlanAction.DELETE_LOCAL, i) for i in range(3)]
    push = PlanItem(PlanAction.PUSH, "p", Entry(1, 1, False, None, None))
    store.record_plan("halted", (item for item in [push, *remote, *local]))
    store.record_plan("other", iter([deletion(PlanAction.DELETE_REMOTE, 9)]))
    assert list(open_store().plan_deletions("halted", PlanAction.DELETE_REMOTE)) == remote
    assert list(store.plan_deletions("halted", PlanAction.DELETE_LOCAL)) == local
    assert list(store.plan_deletions("none", PlanAction.DELETE_LOCAL)) == []


def test_a_listing_digest_lasts_until_the_base_changes(
    open_store: Callable[[], BaseStore],
) -> None:
    """A remote listing's digest vouches for the base it was compared with: any write to
    the base forgets it, in the same transaction; another repository's write does not."""
    store = open_store()
    repo = store.repository_id("file:///a", "file:///b", now_ns=1)
    other = store.repository_id("file:///a", "file:///c", now_ns=1)
    assert store.listing_digest(repo) == ""
    store.save_listing_digest(repo, "d1", 1)
    store.save_listing_digest(repo, "d2", 2)
    store.save_listing_digest(other, "o1", 2)
    store.commit_base(repo, [], [])  # nothing written: nothing forgotten
    assert (open_store().listing_digest(repo), store.listing_digest(other)) == ("d2", "o1")
    store.commit_base(repo, [("f", entry(1))], [])
    assert (store.listing_digest(repo), store.listing_digest(other)) == ("", "o1")
    store.save_listing_digest(repo, "d3", 3)
    store.commit_base(repo, [], ["f"])
    assert store.listing_digest(repo) == ""


def longest_path(seed: int) -> str:
    """4096 bytes of incompressible UTF-8 in components of at most 255 bytes: what a deep
    local tree or a hostile remote can hand the store (storsync.paths.refusal)."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    component = MAX_NAME_BYTES - 1
    raw = "".join(rng.choice(alphabet) for _ in range(MAX_PATH_BYTES))
    path = "/".join(raw[i : i + component] for i in range(0, MAX_PATH_BYTES, component + 1))
    path = path[: MAX_PATH_BYTES - 1].rstrip("/") + "z"
    assert len(path.encode()) == MAX_PATH_BYTES and refusal(path) is None
    return path


def test_the_longest_path_the_engine_accepts_is_stored(
    open_store: Callable[[], BaseStore],
) -> None:
    # PostgreSQL limits a btree entry to 2704 bytes: hence the key on the path's hash.
    path, other = longest_path(7), longest_path(8)
    store = open_store()
    repo = store.repository_id("file:///a", "file:///b", now_ns=1)
    store.commit_base(repo, [(path, entry(1)), (other, entry(2))], [])
    assert open_store().load_base(repo) == {path: entry(1), other: entry(2)}
    store.commit_base(repo, [(path, entry(3))], [other])
    assert open_store().load_base(repo) == {path: entry(3)}


def test_both_sqlite_stores_key_a_path_alike(tmp_path: Path) -> None:
    # The stdlib store inlines the key for speed; a row one store wrote the other replaces.
    fast = SqliteBaseStore(tmp_path / "state.db")
    slow = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        repo = fast.repository_id("file:///a", "file:///b", now_ns=1)
        fast.commit_base(repo, [("a", entry(1)), ("caf\u00e9/b", entry(2)), ("c", entry(3))], [])
        slow.commit_base(repo, [("a", entry(4))], ["caf\u00e9/b"])
        assert fast.load_base(repo) == {"a": entry(4), "c": entry(3)}
        fast.commit_base(repo, [("c", entry(5))], ["a"])
        assert slow.load_base(repo) == {"c": entry(5)}
        with sqlite3.connect(tmp_path / "state.db") as conn:
            assert conn.execute("SELECT path, path_key FROM base").fetchall() == [
                ("c", hashlib.sha256(b"c").hexdigest())
            ]
    finally:
        fast.close()
        slow.close()


# ------------------------------------------------------------ Alembic, on both back ends
def test_migrations_create_exactly_the_schema_module(url: str) -> None:
    StateStore(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (HEAD,)
            ]
            differences = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_the_base_is_keyed_by_the_path_hash_or_on_sqlite_stored_by_path(url: str) -> None:
    # compare_metadata does not compare primary keys. PostgreSQL cannot index a path of
    # 4,096 bytes; SQLite stores the base in path order (0014), read without a sort.
    StateStore(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            key = inspector.get_pk_constraint("base")["constrained_columns"]
            indexed = [i["column_names"] for i in inspector.get_indexes("base")]
            sqlite = engine.dialect.name == "sqlite"
            if sqlite:
                made = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'base'"))
                assert made.scalar_one().endswith("WITHOUT ROWID")
    finally:
        engine.dispose()
    assert key == ["repository_id", "path" if sqlite else "path_key"]
    assert indexed == []


def test_an_up_to_date_database_is_not_migrated_again(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    StateStore(url).close()

    def refuse(engine: sa.Engine) -> None:
        raise AssertionError("migrated an up-to-date database")

    monkeypatch.setattr(migrate, "upgrade", refuse)
    store = StateStore(url)
    try:
        assert store.load_base(store.repository_id("file:///a", "file:///b", now_ns=1)) == {}
    finally:
        store.close()


def test_an_old_database_is_upgraded_and_keeps_its_base(url: str) -> None:
    config = alembic_config()
    first = ScriptDirectory.from_config(config).get_base()
    assert isinstance(first, str)
    old = BaseEntry(3, None, True, 10, None, None, 11, None, "e")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:  # the first schema, with a pair and its base
            config.attributes["connection"] = conn
            command.upgrade(config, first)
            conn.execute(
                sa.text(
                    "INSERT INTO repositories (id, local_url, remote_url, created_ns)"
                    " VALUES ('r1', 'file:///a', 'file:///b', 5)"
                )
            )
            values = {name: getattr(old, name) for name in BASE_COLUMNS}
            conn.execute(OLD_BASE.insert().values(repository_id="r1", path="old", **values))
    finally:
        engine.dispose()
    store = StateStore(url)
    try:
        assert store.repository_id("file:///a", "file:///b", now_ns=9) == "r1"
        assert store.load_base("r1") == {"old": old}
        store.commit_base("r1", [("x", entry(1))], [])
        assert store.load_base("r1") == {"old": old, "x": entry(1)}
    finally:
        store.close()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (HEAD,)
            ]
    finally:
        engine.dispose()


def _database_at(url: str, revision: str, rows: list[dict[str, object]]) -> None:
    """Bring the empty database at ``url`` to ``revision`` and give it these base rows."""
    config = alembic_config()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            if rows:
                conn.execute(OLD_BASE.insert(), rows)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", STORES)
def test_a_base_at_0002_is_keyed_by_hash_and_still_readable_and_committable(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend = "postgresql" if kind.endswith("postgresql") else "sqlite"
    url = database_url(backend, request, tmp_path)
    # Two pairs sharing paths, and more rows than the migration keys in one batch (5000).
    expected: dict[str, dict[str, BaseEntry]] = {"r1": {}, "r2": {}}
    hostile = ["A", "a ", "caf\u00e9", "cafe\u0301", 'it\'s/"q"/100%/_x_/;--', "\U0001f600/\u4e2d"]
    hostile.append(longest_path(10)[:2600])  # about as long as 0002's key allowed on PostgreSQL
    for i, path in enumerate([*hostile, *(f"d{i % 97}/f{i:05d}" for i in range(6000))]):
        expected["r1"][path] = entry(i)
        if i % 3 == 0:
            expected["r2"][path] = entry(i + 1, h=None, inode=None)
    rows = [
        {"repository_id": repo, "path": path, **{n: getattr(e, n) for n in BASE_COLUMNS}}
        for repo, base in expected.items()
        for path, e in base.items()
    ]
    _database_at(url, "0002_service", rows)

    store: BaseStore = (
        SqliteBaseStore(tmp_path / "state.db") if kind == "sqlite3" else StateStore(url)
    )
    try:
        assert store.load_base("r1") == expected["r1"]
        assert store.load_base("r2") == expected["r2"]
        long_path = longest_path(9)
        store.commit_base(
            "r1",
            [("A", entry(-1)), ("new", entry(-2)), (long_path, entry(-3))],
            ["a ", "d0/f00000"],
        )
        store.commit_base("r2", [("caf\u00e9", entry(-4))], ["cafe\u0301", "d2/f00002"])
        expected["r1"].update({"A": entry(-1), "new": entry(-2), long_path: entry(-3)})
        del expected["r1"]["a "], expected["r1"]["d0/f00000"]
        expected["r2"]["caf\u00e9"] = entry(-4)
        del expected["r2"]["cafe\u0301"], expected["r2"]["d2/f00002"]
        assert store.load_base("r1") == expected["r1"]
        assert store.load_base("r2") == expected["r2"]
    finally:
        store.close()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (HEAD,)
            ]
            keys = conn.execute(sa.select(schema.base.c.path, schema.base.c.path_key)).all()
    finally:
        engine.dispose()
    assert len(keys) == len(expected["r1"]) + len(expected["r2"])
    assert all(key == hashlib.sha256(path.encode()).hexdigest() for path, key in keys)


def test_0003_downgrades_to_the_path_as_key(url: str) -> None:
    StateStore(url).close()
    store = StateStore(url)
    try:
        repo = store.repository_id("file:///a", "file:///b", now_ns=1)
        store.commit_base(repo, [("x", entry(1)), ("d/y", entry(2))], [])
    finally:
        store.close()
    config = alembic_config()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0002_service")
        with engine.connect() as conn:
            key = sa.inspect(conn).get_pk_constraint("base")["constrained_columns"]
            paths = conn.execute(sa.select(OLD_BASE.c.path).order_by(OLD_BASE.c.path)).all()
    finally:
        engine.dispose()
    assert key == ["repository_id", "path"]
    assert paths == [("d/y",), ("x",)]


def test_0014_stores_a_sqlite_base_in_path_order_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = alembic_config()
    engine = sa.create_engine(url)
    paths = [f"d{i % 7}/f{i:03d}" for i in range(200)]
    random.Random(14).shuffle(paths)  # written in no order: the old table kept them so
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0013_session_moves")
        with sqlite3.connect(tmp_path / "state.db") as conn13:  # rows as 0013 keyed them
            conn13.execute(
                "INSERT INTO repositories (id, local_url, remote_url, created_ns) "
                "VALUES ('r1', 'file:///a', 'file:///b', 1)"
            )
            for i, path in enumerate(paths):
                key = hashlib.sha256(path.encode()).hexdigest()
                conn13.execute(
                    "INSERT INTO base VALUES ('r1', ?, ?, 'h', 0, ?, ?, NULL, ?, ?, NULL, ?)",
                    (path, i, i, i, i, i, key),
                )
        conn13.close()
        upgraded = SqliteBaseStore(tmp_path / "state.db")  # migrates to HEAD
        try:
            walked = list(upgraded.walk_base("r1"))
            assert [p for p, _ in walked] == sorted(paths)
            assert upgraded.base_entry("r1", paths[5]) == BaseEntry(
                5, "h", False, 5, 5, None, 5, 5, None
            )
            upgraded.commit_base(
                "r1", [(paths[0], BaseEntry(1, None, True, 1, 1, None, 1, 1, None))], [paths[1]]
            )
            assert upgraded.base_count("r1") == 199
        finally:
            upgraded.close()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0013_session_moves")
        with engine.connect() as conn:
            key = sa.inspect(conn).get_pk_constraint("base")["constrained_columns"]
            rows = conn.execute(sa.text("SELECT path, path_key FROM base")).all()
    finally:
        engine.dispose()
    assert key == ["repository_id", "path_key"]
    assert sorted(rows) == sorted(
        (p, hashlib.sha256(p.encode()).hexdigest()) for p in paths if p != paths[1]
    )


# ------------------------------------------------------------ log items of the workers
def item_stores(url: str, tmp_path: Path) -> list[BaseStore]:
    """Every store a session worker may write its log items through, on ``url``."""
    stores: list[BaseStore] = [StateStore(url)]
    if url.startswith("sqlite:///"):
        stores.append(SqliteBaseStore(Path(url.removeprefix("sqlite:///"))))
    return stores


def test_a_batch_of_log_items_is_found_again_by_its_ids(url: str, tmp_path: Path) -> None:
    catalog = Catalog(url, SystemClock())
    try:
        for store in item_stores(url, tmp_path):
            batch = [("a", 1), ("dir/b c", None), ("ü/€", 2**40)]
            first, last = store.record_items("s1", "pushed", 5, batch)
            # Another session's rows and another kind of the same session, afterwards.
            store.record_items("s2", "pushed", 6, [("x", 1)])
            other = store.record_items("s1", "pulled", 7, [("y", 2)])
            assert last - first == len(batch) - 1
            pushed = LogKind.PUSHED
            assert catalog.log_items.batch("s1", pushed, first, last) == batch
            assert catalog.log_items.batch("s1", pushed, first, other[1]) == batch
            assert catalog.log_items.batch("s2", pushed, first, last) == []
            store.close()
    finally:
        catalog.close()


def test_log_item_ids_go_beyond_32_bits(url: str, tmp_path: Path) -> None:
    StateStore(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT setval('log_items_id_seq', 2147483647)"))
            else:
                conn.execute(
                    schema.log_items.insert().values(
                        id=2**31 - 1, session_id="s0", ts_ns=1, kind="pushed", path="p"
                    )
                )
    finally:
        engine.dispose()
    for store in item_stores(url, tmp_path):
        first, last = store.record_items("s1", "pushed", 5, [("a", 1), ("b", 2)])
        assert 2**31 <= first < last
        store.close()
