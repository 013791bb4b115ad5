"""The base in a SQLite file through the standard library: the command line's fast path.

Importing SQLAlchemy costs 0.4-0.7 s on these machines, more than a whole no-op session
of 10,000 files (docs/decisions.md), so the one-shot command reads and writes its base
with ``sqlite3`` directly. The schema is still Alembic's: an out-of-date file is upgraded
through ``storsync.state.migrate`` (and only then is SQLAlchemy imported), and the tests
run the same contract against this store and the SQLAlchemy one.
"""

from __future__ import annotations

import operator
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from hashlib import sha256
from pathlib import Path

from storsync.model import BaseEntry, FoundConflict, PlanAction, PlanItem, Resolution
from storsync.state import conflict_sql
from storsync.state.migrations import HEAD
from storsync.state.protocol import BASE_COLUMNS, below, plan_item, plan_row

_columns = operator.attrgetter(*BASE_COLUMNS)  # an entry's BASE_COLUMNS values, as a tuple
_path = operator.itemgetter(1)  # a row's path
_SELECT = f"SELECT path, {', '.join(BASE_COLUMNS)} FROM base WHERE repository_id = ?"
_ONE = f"SELECT {', '.join(BASE_COLUMNS)} FROM base WHERE repository_id = ? AND path = ?"
# ``path`` compared as bytes: SQLite's default collation is binary.
# The next path a step on, skipped to along the primary key (0014: the table's own order):
# 0.05 s for 64 steps over a million paths, where numbering them all took 0.5 s.
_NEXT = "SELECT path FROM base WHERE repository_id = ? AND path > ? ORDER BY path LIMIT 1 OFFSET ?"
_BELOW = "SELECT 1 FROM base WHERE repository_id = ? AND path >= ? AND path < ? LIMIT 1"
_ADD_ITEM = "INSERT INTO log_items (session_id, ts_ns, kind, path, size) VALUES (?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM base WHERE repository_id = ? AND path = ?"
_ADD_PLAN = (
    "INSERT INTO plan_items (session_id, action, path, size, mtime_ns, inode, etag) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# A thousand at a time after the last id read: each a statement of its own, none left
# open while the session commits on the same connection.
_DELETIONS = (
    "SELECT id, action, path, size, mtime_ns, inode, etag FROM plan_items "
    "WHERE session_id = ? AND action = ? AND id > ? ORDER BY id LIMIT 1000"
)
# A recorded path replaces its row in place: the same as the SQLAlchemy store's delete
# and insert, at a third less of the cost (an upsert: SQLite 3.24 or later).
_UPSERT = (
    f"INSERT INTO base (repository_id, path, path_key, {', '.join(BASE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(BASE_COLUMNS) + 3))}) "
    "ON CONFLICT (repository_id, path) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in BASE_COLUMNS)
)

_FORGET_LISTING = "DELETE FROM remote_listings WHERE repository_id = ?"

# The schema of revision _FRESH_REVISION as Alembic writes it to SQLite, statement by
# statement, in the order it creates them (tests/test_state_fresh_schema.py regenerates it).
_FRESH_REVISION = "0014_base_in_path_order"
_FRESH_SCHEMA_FILE = Path(__file__).with_name("fresh_sqlite.sql")


class SqliteBaseStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = self._connect()
        if self._schema_version() != HEAD and not self._create_fresh():
            self._conn.close()
            from storsync.state.migrate import upgrade_url

            upgrade_url(f"sqlite:///{path}")
            self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL with synchronous=NORMAL survives a killed process; a power cut may lose the
        # last commits, which only makes the next run record again what it finds identical.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _create_fresh(self) -> bool:
        """Give a file without any table the newest schema directly; False otherwise.

        Exactly the tables Alembic's migrations create (a test compares the two), so the
        first run of a pair does not pay 0.5 s of SQLAlchemy and Alembic imports. Any
        other file, and any HEAD this script was not written for, goes through Alembic.
        """
        if HEAD != _FRESH_REVISION:
            return False
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            if self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                return False
            for statement in _FRESH_SCHEMA_FILE.read_text().split(";\n\n"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD,))
        return True

    def _schema_version(self) -> str | None:
        try:
            row = self._conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else str(row[0])

    def repository_id(self, local_url: str, remote_url: str, *, now_ns: int) -> str:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            row = self._conn.execute(
                "SELECT id FROM repositories WHERE local_url = ? AND remote_url = ?",
                (local_url, remote_url),
            ).fetchone()
            if row is not None:
                return str(row[0])
            new_id = str(uuid.uuid4())
            self._conn.execute(
                "INSERT INTO repositories (id, local_url, remote_url, created_ns) "
                "VALUES (?, ?, ?, ?)",
                (new_id, local_url, remote_url, now_ns),
            )
            return new_id

    def load_base(self, repository_id: str) -> dict[str, BaseEntry]:
        rows = self._conn.execute(_SELECT, (repository_id,))
        return {path: BaseEntry(size, h, bool(x), *rest) for path, size, h, x, *rest in rows}

    def walk_base(self, repository_id: str) -> Iterator[tuple[str, BaseEntry]]:
        # SQLite's default collation is binary: the byte order of the UTF-8 text. The
        # table is stored in that order (0014): a range of its primary key, no sort.
        rows = self._conn.execute(f"{_SELECT} ORDER BY path", (repository_id,))
        new = tuple.__new__  # the named tuple made without its __new__'s frame: 8% less
        for path, size, h, x, lm, li, le, rm, ri, re in rows:  # no star: once per path
            yield path, new(BaseEntry, (size, h, x == 1, lm, li, le, rm, ri, re))

    def load_base_under(self, repository_id: str, tops: Sequence[str]) -> dict[str, BaseEntry]:
        found: dict[str, BaseEntry] = {}
        for at in range(0, len(tops), 200):  # within SQLite's parameter limit
            chunk = tops[at : at + 200]
            ranges, values = [], []
            for top in chunk:
                ranges.append("path = ? OR (path >= ? AND path < ?)")
                values += [top, *below(top)]
            rows = self._conn.execute(
                f"{_SELECT} AND ({' OR '.join(ranges)})", (repository_id, *values)
            )
            found.update(
                (path, BaseEntry(size, h, bool(x), *rest)) for path, size, h, x, *rest in rows
            )
        return found

    def base_count(self, repository_id: str) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM base WHERE repository_id = ?", (repository_id,)
        )
        return int(row.fetchone()[0])

    def base_every(self, repository_id: str, step: int) -> list[str]:
        found: list[str] = []
        last = ""
        while row := self._conn.execute(_NEXT, (repository_id, last, step - 1)).fetchone():
            last = row[0]
            found.append(last)
        return found

    def base_entry(self, repository_id: str, path: str) -> BaseEntry | None:
        row = self._conn.execute(_ONE, (repository_id, path))
        found = row.fetchone()
        if found is None:
            return None
        size, h, x, *rest = found
        return BaseEntry(size, h, bool(x), *rest)

    def base_has_below(self, repository_id: str, folder: str) -> bool:
        low, high = below(folder)
        row = self._conn.execute(_BELOW, (repository_id, low, high)).fetchone()
        return row is not None

    def commit_base(
        self,
        repository_id: str,
        records: Iterable[tuple[str, BaseEntry]],
        forgotten: Iterable[str],
    ) -> None:
        # path_key (storsync.state.keys.path_key, inlined: this runs for every file) is
        # PostgreSQL's key; on SQLite the table is keyed and stored by path (0014).
        rows = [
            (repository_id, path, sha256(path.encode()).hexdigest(), *_columns(entry))
            for path, entry in records
        ]
        gone = [(repository_id, path) for path in forgotten]
        if not rows and not gone:
            return
        # In key order the table's pages are written one after the other instead of all
        # over, which a batch larger than the page cache pays for dearly.
        rows.sort(key=_path)
        gone.sort(key=_path)
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(_FORGET_LISTING, (repository_id,))
            self._conn.executemany(_DELETE, gone)
            self._conn.executemany(_UPSERT, rows)

    def listing_digest(self, repository_id: str) -> str:
        row = self._conn.execute(
            "SELECT digest FROM remote_listings WHERE repository_id = ?", (repository_id,)
        ).fetchone()
        return "" if row is None else str(row[0])

    def save_listing_digest(self, repository_id: str, digest: str, now_ns: int) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT INTO remote_listings (repository_id, digest, recorded_ns) VALUES (?, ?, ?) "
                "ON CONFLICT (repository_id) DO UPDATE SET "
                "digest = excluded.digest, recorded_ns = excluded.recorded_ns",
                (repository_id, digest, now_ns),
            )

    def record_items(
        self, session_id: str, kind: str, ts_ns: int, items: Sequence[tuple[str, int | None]]
    ) -> tuple[int, int]:
        with self._conn:
            # The write lock for the whole batch: nobody else numbers rows meanwhile, so
            # the batch's ids are the run ending at the last one.
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                _ADD_ITEM, [(session_id, ts_ns, kind, path, size) for path, size in items]
            )
            last = int(self._conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        return last - len(items) + 1, last

    def record_plan(self, session_id: str, items: Iterable[PlanItem]) -> None:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(_ADD_PLAN, ((session_id, *plan_row(i)) for i in items))

    def plan_deletions(self, session_id: str, action: PlanAction) -> Iterator[PlanItem]:
        last = 0
        while rows := self._conn.execute(_DELETIONS, (session_id, action.value, last)).fetchall():
            last = rows[-1][0]
            yield from (plan_item(*row[1:]) for row in rows)

    def record_conflicts(
        self, repository_id: str, session_id: str, found: Sequence[FoundConflict], now_ns: int
    ) -> None:
        rows = [conflict_sql.row(repository_id, session_id, f, now_ns) for f in found]
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(conflict_sql.INSERT, rows)

    def resolutions(self, session_id: str) -> list[Resolution]:
        rows = self._conn.execute(conflict_sql.RESOLUTIONS, {"session_id": session_id})
        return [conflict_sql.resolution(*row) for row in rows]

    def settle_resolution(
        self, conflict_id: str, session_id: str, *, done: bool, now_ns: int
    ) -> None:
        statement, values = conflict_sql.settled(conflict_id, session_id, done, now_ns)
        self._conn.execute(statement, values)

    def close(self) -> None:
        self._conn.close()
