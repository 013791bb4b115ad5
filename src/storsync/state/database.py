"""A database through SQLAlchemy: SQLite or PostgreSQL, brought to the newest schema when
opened. Every store of the service's records shares one of these."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storsync.errors import UsageError
from storsync.state.migrations import HEAD


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL with synchronous=NORMAL survives a killed process; a power cut may lose the last
    # commits, which only makes the next run record again what it finds identical.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise UsageError(f"cannot use database URL {url!r}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._migrate()

    def _migrate(self) -> None:
        with self.engine.connect() as conn:
            if sa.inspect(conn).has_table("alembic_version"):
                current = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                if current.scalar() == HEAD:
                    return
        from storsync.state.migrate import upgrade

        upgrade(self.engine)

    def shown(self) -> str:
        """The URL as a log may show it: any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()
