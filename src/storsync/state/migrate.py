"""Bring a database to the newest schema with Alembic (imported only when needed)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config


def upgrade(engine: sa.Engine) -> None:
    config = Config()
    config.set_main_option("script_location", "storsync.state:migrations")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def upgrade_url(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
