"""The base through SQLAlchemy: SQLite or PostgreSQL, short transactions."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator, Sequence

import sqlalchemy as sa

from storsync.model import BaseEntry, FoundConflict, PlanAction, PlanItem, Resolution
from storsync.state import conflict_sql, schema
from storsync.state.database import Database
from storsync.state.keys import path_key
from storsync.state.protocol import BASE_COLUMNS, below, plan_item, plan_row

_BASE_BATCH = 2000  # rows a whole-base read fetches at a time


class StateStore:
    """The base (and a session's log items) through SQLAlchemy, for the service's workers
    on PostgreSQL; the command line and SQLite workers use SqliteBaseStore."""

    def __init__(self, url: str) -> None:
        self.database = Database(url)
        self.engine = self.database.engine

    def close(self) -> None:
        self.database.close()

    # -- repositories -----------------------------------------------------------------

    def repository_id(self, local_url: str, remote_url: str, *, now_ns: int) -> str:
        """The id of the pair, created on first use."""
        table = schema.repositories
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.select(table.c.id).where(
                    table.c.local_url == local_url, table.c.remote_url == remote_url
                )
            ).scalar()
            if found is not None:
                return str(found)
            new_id = str(uuid.uuid4())
            conn.execute(
                table.insert().values(
                    id=new_id, local_url=local_url, remote_url=remote_url, created_ns=now_ns
                )
            )
            return new_id

    # -- base -------------------------------------------------------------------------

    def load_base(self, repository_id: str) -> dict[str, BaseEntry]:
        table = schema.base
        columns = [table.c.path, *(table.c[name] for name in BASE_COLUMNS)]
        query = sa.select(*columns).where(table.c.repository_id == repository_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query)
            return {path: BaseEntry(size, h, bool(x), *rest) for path, size, h, x, *rest in rows}

    def walk_base(self, repository_id: str) -> Iterator[tuple[str, BaseEntry]]:
        table = schema.base
        columns = [table.c.path, *(table.c[name] for name in BASE_COLUMNS)]
        query = (
            sa.select(*columns)
            .where(table.c.repository_id == repository_id)
            .order_by(self._bytewise(table.c.path))
        )
        # A server-side cursor read a batch at a time: the rows are never all in memory.
        with self.engine.connect() as conn:
            rows = conn.execution_options(yield_per=_BASE_BATCH).execute(query)
            for path, size, h, x, *rest in rows:
                yield path, BaseEntry(size, h, bool(x), *rest)

    def load_base_under(self, repository_id: str, tops: Sequence[str]) -> dict[str, BaseEntry]:
        table = schema.base
        columns = [table.c.path, *(table.c[name] for name in BASE_COLUMNS)]
        path = self._bytewise(table.c.path)
        found: dict[str, BaseEntry] = {}
        with self.engine.connect() as conn:
            for at in range(0, len(tops), 200):  # within any database's parameter limit
                chunk = tops[at : at + 200]
                ranges = [
                    sa.or_(path == top, sa.and_(path >= below(top)[0], path < below(top)[1]))
                    for top in chunk
                ]
                query = sa.select(*columns).where(
                    table.c.repository_id == repository_id, sa.or_(*ranges)
                )
                found.update(
                    (p, BaseEntry(size, h, bool(x), *rest))
                    for p, size, h, x, *rest in conn.execute(query)
                )
        return found

    def base_count(self, repository_id: str) -> int:
        table = schema.base
        query = sa.select(sa.func.count()).where(table.c.repository_id == repository_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def base_every(self, repository_id: str, step: int) -> list[str]:
        table = schema.base
        place = sa.func.row_number().over(order_by=self._bytewise(table.c.path)).label("place")
        numbered = (
            sa.select(table.c.path, place).where(table.c.repository_id == repository_id).subquery()
        )
        query = (
            sa.select(numbered.c.path)
            .where(numbered.c.place % step == 0)
            .order_by(self._bytewise(numbered.c.path))
        )
        with self.engine.connect() as conn:
            return [path for (path,) in conn.execute(query)]

    def _bytewise(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        """``column`` compared as bytes whatever the database's collation (PostgreSQL's
        may not be)."""
        return column.collate("C") if self.engine.dialect.name == "postgresql" else column

    def base_entry(self, repository_id: str, path: str) -> BaseEntry | None:
        table = schema.base
        query = sa.select(*(table.c[name] for name in BASE_COLUMNS)).where(
            table.c.repository_id == repository_id, table.c.path_key == path_key(path)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).first()
        if found is None:
            return None
        size, h, x, *rest = found
        return BaseEntry(size, h, bool(x), *rest)

    def base_has_below(self, repository_id: str, folder: str) -> bool:
        table = schema.base
        low, high = below(folder)
        path = self._bytewise(table.c.path)
        query = (
            sa.select(sa.literal(1))
            .where(table.c.repository_id == repository_id, path >= low, path < high)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def commit_base(
        self,
        repository_id: str,
        records: Iterable[tuple[str, BaseEntry]],
        forgotten: Iterable[str],
    ) -> None:
        """Record verified paths and forget removed ones, in one transaction."""
        table = schema.base
        rows = [
            {
                "repository_id": repository_id,
                "path_key": path_key(path),
                "path": path,
                **{name: getattr(entry, name) for name in BASE_COLUMNS},
            }
            for path, entry in records
        ]
        gone = [{"k": path_key(path)} for path in forgotten] + [
            {"k": row["path_key"]} for row in rows
        ]
        if not gone:
            return
        delete = table.delete().where(
            table.c.repository_id == repository_id, table.c.path_key == sa.bindparam("k")
        )
        listing = schema.remote_listings
        with self.engine.begin() as conn:
            conn.execute(listing.delete().where(listing.c.repository_id == repository_id))
            conn.execute(delete, gone)
            if rows:
                conn.execute(table.insert(), rows)

    def listing_digest(self, repository_id: str) -> str:
        listing = schema.remote_listings
        query = sa.select(listing.c.digest).where(listing.c.repository_id == repository_id)
        with self.engine.connect() as conn:
            return str(conn.execute(query).scalar_one_or_none() or "")

    def save_listing_digest(self, repository_id: str, digest: str, now_ns: int) -> None:
        listing = schema.remote_listings
        with self.engine.begin() as conn:
            conn.execute(listing.delete().where(listing.c.repository_id == repository_id))
            conn.execute(
                listing.insert().values(
                    repository_id=repository_id, digest=digest, recorded_ns=now_ns
                )
            )

    # -- a halted plan ----------------------------------------------------------------

    def record_plan(self, session_id: str, items: Iterable[PlanItem]) -> None:
        table = schema.plan_items
        names = ("action", "path", "size", "mtime_ns", "inode", "etag")
        rows = (
            {"session_id": session_id, **dict(zip(names, plan_row(i), strict=True))} for i in items
        )
        with self.engine.begin() as conn:  # one transaction, inserted a thousand at a time
            while chunk := list(itertools.islice(rows, 1000)):
                conn.execute(table.insert(), chunk)

    def plan_deletions(self, session_id: str, action: PlanAction) -> Iterator[PlanItem]:
        t = schema.plan_items
        columns = (t.c.id, t.c.action, t.c.path, t.c.size, t.c.mtime_ns, t.c.inode, t.c.etag)
        last = 0
        while True:  # a thousand at a time after the last id read, no cursor left open
            query = (
                sa.select(*columns)
                .where(t.c.session_id == session_id, t.c.action == action.value, t.c.id > last)
                .order_by(t.c.id)
                .limit(1000)
            )
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            last = rows[-1][0]
            yield from (plan_item(*row[1:]) for row in rows)

    # -- conflicts --------------------------------------------------------------------

    def record_conflicts(
        self, repository_id: str, session_id: str, found: Sequence[FoundConflict], now_ns: int
    ) -> None:
        rows = [conflict_sql.row(repository_id, session_id, f, now_ns) for f in found]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(sa.text(conflict_sql.INSERT), rows)

    def resolutions(self, session_id: str) -> list[Resolution]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(conflict_sql.RESOLUTIONS), {"session_id": session_id})
            return [conflict_sql.resolution(*row) for row in rows]

    def settle_resolution(
        self, conflict_id: str, session_id: str, *, done: bool, now_ns: int
    ) -> None:
        statement, values = conflict_sql.settled(conflict_id, session_id, done, now_ns)
        with self.engine.begin() as conn:
            conn.execute(sa.text(statement), values)

    # -- log items --------------------------------------------------------------------

    def record_items(
        self, session_id: str, kind: str, ts_ns: int, items: Sequence[tuple[str, int | None]]
    ) -> tuple[int, int]:
        table = schema.log_items
        rows = [
            {"session_id": session_id, "ts_ns": ts_ns, "kind": kind, "path": p, "size": s}
            for p, s in items
        ]
        with self.engine.begin() as conn:
            ids = conn.execute(table.insert().returning(table.c.id), rows).scalars().all()
        # Other sessions may number rows in between on PostgreSQL: readers of a range
        # select by session and kind as well.
        return min(ids), max(ids)
